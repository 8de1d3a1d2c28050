"""Joe Sandbox's error envelope and codes, and the HTTP status the emulator pairs with each code.

jbxapi only looks at `errors[0].code` (and whether the status is below 400), so the codes are what
must be right; the statuses are our choice.
"""

from __future__ import annotations

import json

from joedefender_emulators.http import ApiError, Response

QUOTA_EXCEEDED = 1  # not in jbxapi; XSOAR's JoeSecurityV2 maps code 1 to "Quota" (joe-api.md §3)
MISSING_PARAMETER = 2
INVALID_PARAMETER = 3
INVALID_API_KEY = 4
SERVER_OFFLINE = 5
INTERNAL_SERVER_ERROR = 6
PERMISSION_DENIED = 7
UNKNOWN_ENDPOINT = 8

# docs silent: the HTTP status per code is undocumented (joe-api.md §3); these are our choice.
_STATUS_FOR_CODE = {
    QUOTA_EXCEEDED: 429,
    MISSING_PARAMETER: 400,
    INVALID_PARAMETER: 400,
    INVALID_API_KEY: 403,
    SERVER_OFFLINE: 503,
    INTERNAL_SERVER_ERROR: 500,
    PERMISSION_DENIED: 403,
    UNKNOWN_ENDPOINT: 404,
}

# The shared server raises errors with string codes (unrouted path, wrong method, unreadable body)
# and fault rules may name a status without a code; both are translated into Joe's numbers.
_CODE_FOR_NAME = {
    "NotFound": UNKNOWN_ENDPOINT,
    "MethodNotAllowed": UNKNOWN_ENDPOINT,
    "BadRequest": INVALID_PARAMETER,
    "Unauthorized": INVALID_API_KEY,
    "Forbidden": PERMISSION_DENIED,
    "TooManyRequests": QUOTA_EXCEEDED,
    "InternalServerError": INTERNAL_SERVER_ERROR,
    "BadGateway": INTERNAL_SERVER_ERROR,
    "ServiceUnavailable": SERVER_OFFLINE,
}


def joe_error(code: int, message: str) -> ApiError:
    """An ApiError carrying a Joe error code, with the status this emulator uses for it."""
    return ApiError(_STATUS_FOR_CODE.get(code, 400), code, message)


def missing(name: str) -> ApiError:
    return joe_error(MISSING_PARAMETER, f"Missing parameter {name}.")


def invalid(name: str, reason: str) -> ApiError:
    return joe_error(INVALID_PARAMETER, f"Invalid value for parameter {name}: {reason}.")


def render_error(error: ApiError) -> Response:
    """The `{"errors": [{"code", "message"}]}` envelope jbxapi turns into its exception classes."""
    body = {"errors": [{"code": _numeric_code(error.code, error.status), "message": error.message}]}
    return Response(error.status, json.dumps(body).encode(), dict(error.headers))


def _numeric_code(code: str | int, status: int) -> int:
    if isinstance(code, int):
        return code
    if code.strip().isdigit():
        return int(code)
    fallback = INVALID_PARAMETER if status < 500 else INTERNAL_SERVER_ERROR
    return _CODE_FOR_NAME.get(code, fallback)
