"""Turns what jbxapi raises into our error types, and decides which of them are worth a retry.

jbxapi reports everything as `JoeException` subclasses: `ApiError` with Joe's code, its own
`ConnectionError`, or a bare `JoeException` naming the HTTP status when the body was not Joe's
JSON envelope (a proxy's 502 page, a wrong URL).
"""

from __future__ import annotations

import re

import jbxapi

from joedefender.adapters.joe.errors import (
    JoeAuthError,
    JoeQuotaError,
    JoeRequestError,
    JoeSandboxError,
    JoeUnavailableError,
)

# Joe's documented error codes (jbxapi `ApiError.__new__`; code 1 = quota per Joe's XSOAR integration).
QUOTA_CODE = 1
_RETRYABLE_CODES = frozenset({5, 6})  # server offline (maintenance), internal server error
_STATUS_IN_MESSAGE = re.compile(r"\((\d{3})\)")
_MASK = "***"


def scrub(text: str, secret: str) -> str:
    """Remove the API key from text that may have been built from a request or a server answer."""
    return text.replace(secret, _MASK) if secret else text


def translate(exc: BaseException, secret: str, operation: str) -> JoeSandboxError:
    """Our error for a jbxapi failure of `operation`; the message never carries the key."""
    detail = scrub(str(exc) or type(exc).__name__, secret)
    where = f"Joe Sandbox {operation}"
    if isinstance(exc, jbxapi.ApiError):
        code = _code(exc)
        if isinstance(exc, jbxapi.InvalidApiKeyError):
            return JoeAuthError(
                f"{where}: the API key was rejected ({detail}); permanent: fix JoeSandboxAPIKey", code=code
            )
        if code == QUOTA_CODE:
            return JoeQuotaError(
                f"{where}: the account's quota is exhausted ({detail}); permanent until it resets", code=code
            )
        if code in _RETRYABLE_CODES:
            return JoeUnavailableError(f"{where}: {detail} (Joe error code {code})", code=code)
        return JoeRequestError(f"{where}: {detail} (Joe error code {code})", code=code)
    if isinstance(exc, jbxapi.ConnectionError):
        return JoeUnavailableError(f"{where}: cannot reach Joe Sandbox ({detail})")
    if isinstance(exc, jbxapi.JoeException):
        status = _status(detail)
        if status is None or status >= 500 or status == 429:
            return JoeUnavailableError(f"{where}: unexpected answer from Joe Sandbox ({detail})")
        return JoeRequestError(f"{where}: unexpected answer ({detail}); is JoeSandboxBaseURL right?")
    if isinstance(exc, ValueError):  # jbxapi's check of parameter names, before anything is sent
        return JoeRequestError(f"{where}: {detail}")
    return JoeSandboxError(f"{where}: {type(exc).__name__}: {detail}")


def _code(exc: jbxapi.ApiError) -> int | None:
    code = getattr(exc, "code", None)
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None


def _status(message: str) -> int | None:
    match = _STATUS_IN_MESSAGE.search(message)
    return int(match[1]) if match else None
