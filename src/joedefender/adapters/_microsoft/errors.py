"""Failures of Defender's APIs (the MDE API, and Defender XDR's security API on Microsoft Graph)
as types, so the adapters can react to each case without reading text.

Every error carries the service's `code`, `message` and correlation `target` (MDE's `target`,
Graph's `request-id`: what Microsoft support asks for) and never the token, the client secret or
a download link's signature. `core_error` maps them to the core's errors, one table for both APIs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from joedefender.domain.errors import (
    Busy,
    JoeDefenderError,
    Misconfigured,
    NotAllowed,
    NotFound,
    PortError,
    Rejected,
    Throttled,
    Transient,
)

# Defender's 403 text names permissions like "Alert.ReadWrite.All" or "Machine.LiveResponse".
_PERMISSION = re.compile(r"\b[A-Z][A-Za-z]*(?:\.[A-Z][A-Za-z]*)+\b")


class DefenderError(JoeDefenderError):
    """A Defender API call failed; `status` is None when no HTTP answer was received."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        target: str | None = None,
        operation: str | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.target = target
        self.operation = operation
        super().__init__(self._describe())

    def _describe(self) -> str:
        head = f"{self.operation}: " if self.operation else ""
        answer = " ".join(str(part) for part in (self.status, self.code) if part is not None)
        tail = f" (target {self.target})" if self.target else ""
        return f"{head}{answer + ': ' if answer else ''}{self.message}{tail}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, target={self.target!r}, operation={self.operation!r})"
        )


class DefenderAuthError(DefenderError):
    """No usable token: the token request was refused, or the API refused a freshly issued token."""


class ForbiddenError(DefenderError):
    """403 `Forbidden`/`DisallowedOperation`: the app lacks a permission (named when Defender says which)."""

    @property
    def permissions(self) -> tuple[str, ...]:
        """Every permission name the message mentions, in order."""
        return tuple(dict.fromkeys(_PERMISSION.findall(self.message)))

    @property
    def missing_permission(self) -> str | None:
        found = self.permissions
        return found[0] if found else None


class FeatureDisabledError(DefenderError):
    """403 `DisabledFeature`: a tenant feature (live response, unsigned scripts...) is switched off."""


class NotFoundError(DefenderError):
    """404: the alert, machine, action, indicator or library file does not exist (or not yet)."""


class BadRequestError(DefenderError):
    """400 other than a busy machine: our request is wrong and retrying it will not help."""


class MachineBusyError(BadRequestError):
    """400 `ActiveRequestAlreadyExists`: another live response holds the machine; try again later."""


class ThrottledError(DefenderError):
    """429 still answered when the retry budget ran out; `retry_after` is Defender's last hint (s)."""

    retry_after: float | None = None


class DefenderServerError(DefenderError):
    """5xx still answered when the retry budget ran out; for a request that is not repeated (a
    comment), `settles_in` as for DefenderTransportError: behind a gateway's 504 the request may
    still be running."""

    settles_in: float | None = None


class DefenderTransportError(DefenderError):
    """Timeouts or broken connections outlasted the retry budget.

    `maybe_applied` is True when a request that must not be repeated (a comment, a live response)
    may have reached Defender before the connection failed: look before trying again, and not
    before `settles_in` seconds, when a request Defender was still working on has landed.
    """

    def __init__(
        self,
        message: str,
        *,
        maybe_applied: bool = False,
        settles_in: float | None = None,
        status: int | None = None,
        code: str | None = None,
        target: str | None = None,
        operation: str | None = None,
    ) -> None:
        self.maybe_applied = maybe_applied
        self.settles_in = settles_in
        if maybe_applied:
            message += " (the request may have reached Defender: look before repeating it)"
        super().__init__(message, status=status, code=code, target=target, operation=operation)


class InvalidResponseError(DefenderError):
    """Defender (or the result blob) answered with something we cannot read: bad JSON, truncated gzip."""


class DownloadTooLargeError(DefenderError):
    """A live response result is larger than the caller's cap; the download was stopped."""


_BY_STATUS: dict[int, type[DefenderError]] = {
    400: BadRequestError,
    401: DefenderAuthError,
    403: ForbiddenError,
    404: NotFoundError,
    429: ThrottledError,
}
_BY_CODE: dict[str, type[DefenderError]] = {
    "activerequestalreadyexists": MachineBusyError,
    "disabledfeature": FeatureDisabledError,
}


def error_for(
    status: int,
    code: str | None,
    message: str,
    *,
    target: str | None = None,
    operation: str | None = None,
    retry_after: float | None = None,
) -> DefenderError:
    """The typed error for an HTTP error answer that will not be (or no longer be) retried."""
    cls = _BY_CODE.get((code or "").lower()) or _BY_STATUS.get(status)
    if cls is None:
        cls = DefenderServerError if status >= 500 else DefenderError
    error = cls(message, status=status, code=code, target=target, operation=operation)
    if isinstance(error, ThrottledError):
        error.retry_after = retry_after
    return error


def core_error(exc: DefenderError, service: str) -> PortError:
    """The core's error for an API client error; `service` names the API in the core's terms.

    A translated error keeps the service's own text as `.message` (the pipeline writes it into the
    job history), says the whole wire description (operation, status, code, target) in `str()`,
    and is raised with the wire error as its cause.
    """
    message = exc.message
    error: PortError
    if isinstance(exc, ThrottledError):
        error = Throttled(message, service=service, retry_after=exc.retry_after)
    elif isinstance(exc, DefenderTransportError):
        error = Transient(message, service=service, maybe_applied=exc.maybe_applied, settles_in=exc.settles_in)
    elif isinstance(exc, DefenderAuthError):
        error = Misconfigured(message, service=service)
    elif isinstance(exc, ForbiddenError | FeatureDisabledError):
        error = NotAllowed(message, service=service)
    elif isinstance(exc, NotFoundError):
        error = NotFound(message, service=service)
    elif isinstance(exc, MachineBusyError):  # before BadRequestError, of which it is one
        error = Busy(message, service=service)
    elif isinstance(exc, BadRequestError | DownloadTooLargeError):
        error = Rejected(message, service=service)
    elif isinstance(exc, DefenderServerError):  # behind a gateway's 504 the request may run on
        error = Transient(message, service=service, settles_in=exc.settles_in)
    else:  # unreadable answers, and any other answer the service may give
        error = Transient(message, service=service)
    error.args = (str(exc),)
    return error


@contextmanager
def translated(service: str) -> Iterator[None]:
    """Raise the core's error for any API client error raised inside the block."""
    try:
        yield
    except DefenderError as exc:
        raise core_error(exc, service) from exc
