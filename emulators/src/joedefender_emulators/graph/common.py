"""What every Graph answer shares: the error body (GD `concepts/errors.md`: `error` with `code`,
`message` and `innerError` carrying the request id and date) and the documented messages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from joedefender_emulators.http import ApiError, Response, json_response

GRAPH_ORIGIN = "https://graph.microsoft.com"

# The Graph security API's 403 (Microsoft's support article "HTTP 403 authorization error when
# calling the Microsoft Graph Security API"): it names no permission.
FORBIDDEN = "Auth token does not contain valid permissions or user does not have valid roles"
# The body of a throttled request (GD `concepts/throttling.md`, the 429 example).
THROTTLED = "Please retry again later."


def render_error(error: ApiError) -> Response:
    """Graph's error body; a fresh request id for every answer."""
    request_id = str(uuid.uuid4())
    inner: dict[str, str] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": request_id,
    }
    if error.status == 429:
        inner |= {"code": "429", "message": "Please retry after", "status": "429"}
    body = {"error": {"code": str(error.code), "message": error.message, "innerError": inner}}
    return json_response(body, error.status, error.headers)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def not_found(what: str) -> ApiError:
    return ApiError(404, "NotFound", f"{what} was not found.")


def unauthorized(reason: str) -> ApiError:
    """401 `InvalidAuthenticationToken`, as Graph answers a token it cannot accept."""
    message = f"Access token validation failure. {reason}"
    return ApiError(
        401,
        "InvalidAuthenticationToken",
        message,
        {
            "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
            'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
        },
    )
