"""The Joe Sandbox failures the pipeline must tell apart, as types.

Callers decide by type: retry later (`JoeUnavailableError`, `retryable`), stop and tell the
operator (`JoeAuthError`, `JoeQuotaError`), or give up on this one request (`JoeRequestError`).
"""

from __future__ import annotations

from joedefender.domain.errors import JoeDefenderError


class JoeSandboxError(JoeDefenderError):
    """Base of every Joe Sandbox client error; `code` is Joe's error code when it sent one."""

    retryable: bool = False

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class JoeAuthError(JoeSandboxError):
    """Joe rejected the API key; permanent until JoeSandboxAPIKey is fixed."""


class JoeQuotaError(JoeSandboxError):
    """The account's submission quota is used up; permanent until the quota resets."""


class JoeUnavailableError(JoeSandboxError):
    """Joe was offline, unreachable or failing (5xx) through every retry; worth trying later."""

    retryable = True

    def __init__(self, message: str, *, code: int | None = None, attempts: int = 1) -> None:
        super().__init__(message, code=code)
        self.attempts = attempts


class JoeRequestError(JoeSandboxError):
    """Joe (or jbxapi, before sending) refused this request: bad parameter, unknown id, no permission."""
