"""The core's own error vocabulary: what went wrong, in terms the workflow can act on.

Each adapter maps its wire errors (HTTP statuses, Defender codes, Joe error codes, jbxapi
exceptions) into these, so the pipeline decides by type and never imports an adapter:

- `Transient`: an outage, a 5xx, a dropped connection or a timeout that outlasted the adapter's
  own retries; worth trying again later. `maybe_applied` says a write may have landed before
  the answer was lost, so the caller must look at the world before repeating it; `settles_in`,
  when that look can be trusted (a write still in flight on the server lands later).
- `Throttled`: the service asked us to slow down; `retry_after` is its hint in seconds.
- `NotFound`: the thing does not exist (or not yet).
- `Busy`: someone else holds the resource (a live response session on the machine).
- `NotAllowed`: a permission or tenant feature forbids this operation.
- `Misconfigured`: credentials or settings are wrong; every call would fail the same way.
- `QuotaExhausted`: the account's quota is used up until it resets.
- `Rejected`: the service refused this request as malformed; repeating it will not help.
"""

from __future__ import annotations


class JoeDefenderError(Exception):
    """The root of every error joedefender raises, so callers can catch ours apart from the rest."""


class PortError(JoeDefenderError):
    """A port (Defender, the sandbox) could not do what was asked; `service` names which one."""

    def __init__(self, message: str, *, service: str = "") -> None:
        self.message = message
        self.service = service
        super().__init__(message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, service={self.service!r})"


class Transient(PortError):
    def __init__(
        self, message: str, *, service: str = "", maybe_applied: bool = False, settles_in: float | None = None
    ) -> None:
        super().__init__(message, service=service)
        self.maybe_applied = maybe_applied
        # Seconds from now until a write the service took, but did not answer, must have landed if
        # it ever will (it may still be running when the client gives up): look only after that.
        self.settles_in = settles_in


class Throttled(Transient):
    def __init__(self, message: str, *, service: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, service=service)
        self.retry_after = retry_after


class NotFound(PortError):
    pass


class Busy(PortError):
    pass


class NotAllowed(PortError):
    pass


class Misconfigured(PortError):
    pass


class QuotaExhausted(PortError):
    pass


class Rejected(PortError):
    pass


class QuarantineFormatError(JoeDefenderError):
    """A Defender quarantine file (Entries or ResourceData) is malformed, truncated or not one at all."""
