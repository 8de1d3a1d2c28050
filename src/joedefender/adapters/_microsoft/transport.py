"""The request loop every call to Defender's APIs goes through (the MDE API, Graph's security
API): limiter, token, send, and the retry rules.

- 429: wait `Retry-After` (or back off when it is missing), within the retry budget.
- 5xx, timeouts, broken connections: exponential backoff with full jitter, within the budget.
- 401: drop the token, get a fresh one and try once more; a second 401 is an auth error.
- Other 4xx: no retry, the typed error at once.

The budget is the shared `joedefender.domain.retry.RetryPolicy` (full jitter here): `max_retries`
retries and `budget` seconds in total, whichever runs out first. Waiting here and in the limiter is
the only sleeping this client does. Tokens and download links (their
signature is a credential) are never logged or put into errors.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from joedefender import __version__
from joedefender.adapters._microsoft.errors import (
    DefenderError,
    DefenderServerError,
    DefenderTransportError,
    error_for,
)
from joedefender.adapters._microsoft.limiter import Limiter
from joedefender.adapters._microsoft.tokens import TokenProvider
from joedefender.adapters._trust import ssl_context
from joedefender.domain.retry import RetryPolicy

USER_AGENT = f"joedefender/{__version__}"
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=30.0)
_MAX_ERROR_TEXT = 300
_GATEWAY_TIMEOUT = 504
# Failures that prove the request never reached the server, so even a non-idempotent one may repeat.
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_SIGNATURE = re.compile(r"(?i)(sig=)[^&\s\"']+")


def redact_signature(text: str) -> str:
    """A download link with its SAS signature blanked, safe for a log line."""
    return _SIGNATURE.sub(r"\1***", text)


class _RedactSignatures(logging.Filter):
    """httpx logs every URL at INFO; a result link's `sig=` is a credential. A record factory may
    have formatted the message already (the Functions host's makes every record safe as it is
    made): then the signature is blanked out of the message itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any("sig=" in str(arg).lower() for arg in record.args):
            record.args = tuple(
                redact_signature(str(arg)) if "sig=" in str(arg).lower() else arg for arg in record.args
            )
        elif not record.args and "sig=" in str(record.msg).lower():
            record.msg = redact_signature(str(record.msg))
        return True


def _install_log_redaction() -> None:
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactSignatures) for f in httpx_logger.filters):
        httpx_logger.addFilter(_RedactSignatures())


_install_log_redaction()


def retry_after_seconds(value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """`Retry-After` as seconds: Defender sends a number; an HTTP date is accepted too."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now()).total_seconds())


def error_details(response: httpx.Response) -> tuple[str | None, str, str | None]:
    """(code, message, target) from the `{"error": {...}}` body, or what the body has. The target
    is the MDE API's `target` or Graph's `innerError.request-id` (either is what support asks for)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        inner = error.get("innerError")
        target = error.get("target") or (inner.get("request-id") if isinstance(inner, dict) else None)
        return (
            str(code) if code is not None else None,
            str(message) if message else response.reason_phrase or "no message",
            str(target) if target is not None else None,
        )
    # Azure Storage answers in XML and names its error in a header
    code = response.headers.get("x-ms-error-code")
    text = response.text.strip()[:_MAX_ERROR_TEXT] if response.content else ""
    return code, text or response.reason_phrase or "no message", None


class Transport:
    """One httpx client for the API (bearer token) and one for result downloads (no token);
    `log_name` names the logger its retries and refreshes go to."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        *,
        limiter: Limiter,
        retry: RetryPolicy,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        ca_bundle: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        log_name: str,
    ) -> None:
        self._log = logging.getLogger(log_name)
        self._tokens = tokens
        self._limiter = limiter
        self._retry = retry
        self._settle = settle_time(timeout)
        self._sleep = sleep
        self._monotonic = monotonic
        self._rand = rand
        verify = ssl_context(ca_bundle)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        self._api = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout, verify=verify, headers=headers, trust_env=True
        )
        self._blobs = httpx.Client(
            timeout=timeout, verify=verify, headers={"User-Agent": USER_AGENT}, follow_redirects=True
        )

    def close(self) -> None:
        self._api.close()
        self._blobs.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        family: str,
        operation: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        files: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send one API request with the retry rules; returns the (read) answer whose status is in `ok`.

        With `idempotent=False`, a request that may have reached the service is not repeated after a
        timeout, a dropped connection or a 5xx (a second comment, a second live response): the
        error says so.
        """
        budget = _Budget(self._retry, self._monotonic)
        body = {"params": params, "json": json, "files": files, "data": data}
        refreshed = False
        while True:
            sent = self._try(method, path, family, budget, body)
            if sent is None:
                continue
            response, failure, held, token = sent
            if response is not None and response.status_code in ok:
                return response
            if response is not None and response.status_code == 401 and not refreshed:
                refreshed = True
                code, _, target = error_details(response)
                self._log.info("%s: 401 %s (target %s); refreshing the token once", operation, code, target)
                self._tokens.invalidate(token)
                continue
            error, wait = self._failure(response, failure, held, budget, operation=operation, idempotent=idempotent)
            if not budget.allows(wait):
                raise error
            self._log.warning("%s; retry %d of %d in %.2fs", error, budget.used + 1, self._retry.max_retries, wait)
            budget.spend()
            self._sleep(wait)

    def _failure(
        self,
        response: httpx.Response | None,
        failure: httpx.TransportError | None,
        held: float | None,
        budget: _Budget,
        *,
        operation: str,
        idempotent: bool,
    ) -> tuple[DefenderError, float]:
        """The error of a try that failed and how long to wait before the next; raised at once
        when the request must not be repeated (a refusal, or a write that may have landed)."""
        if response is None:
            assert failure is not None
            error: DefenderError = _transport_error(failure, operation, idempotent)
            if isinstance(error, DefenderTransportError) and error.maybe_applied:
                if isinstance(failure, httpx.TimeoutException):  # we stopped waiting, not the service
                    error.settles_in = self._settle
                raise error from None
            return error, budget.backoff(self._rand)
        status = response.status_code
        code, message, target = error_details(response)
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        error = error_for(status, code, message, target=target, operation=operation, retry_after=retry_after)
        if status == 429 and held is not None:
            return error, held  # the other threads wait it out too (held at once, `_hold_if_throttled`)
        if status >= 500 and not idempotent:
            # A 5xx may come after the service made the change (the docs are silent on it):
            # not repeated here; the caller looks (comments, actions) before repeating it.
            if isinstance(error, DefenderServerError) and status == _GATEWAY_TIMEOUT:
                error.settles_in = self._settle  # a gateway stopped waiting: the request may run on
            raise error
        if status >= 500:
            return error, budget.backoff(self._rand)
        raise error

    def _try(
        self, method: str, path: str, family: str, budget: _Budget, body: dict[str, Any]
    ) -> tuple[httpx.Response | None, httpx.TransportError | None, float | None, str] | None:
        """One try under a slot of `family`: the answer or the failure, the hold a 429 set, and
        the token sent; None when it was held back before its first byte (its slot counts as
        used: a 429 came back meanwhile), after waiting that hold out."""
        try:
            with self._limiter.slot(family):
                token = self._tokens.token()
                response, failure = self._send(method, path, token, family=family, **body)
                return response, failure, self._hold_if_throttled(response, family, budget), token
        except _HeldBack as back:
            self._sleep(back.seconds)
            return None

    def _gate(self, family: str) -> Callable[[str, Mapping[str, Any]], None]:
        """httpcore's trace hook for one request: right before its first byte goes out (the
        connection open, the token in hand), it is held back if a 429 met meanwhile holds the
        family, however long ago it took its slot."""

        def trace(event: str, _: Mapping[str, Any]) -> None:
            if event.endswith(".send_request_headers.started"):
                seconds = self._limiter.held(family)
                if seconds > 0:
                    raise _HeldBack(seconds)

        return trace

    def _hold_if_throttled(self, response: httpx.Response | None, family: str, budget: _Budget) -> float | None:
        """On a 429, hold the family for its Retry-After (or a back-off) at once, before the slot
        is given back: from the moment the answer is here, no thread of this process (and, as
        soon as they see it, no other instance) sends to the family until it has passed."""
        if response is None or response.status_code != 429:
            return None
        held = retry_after_seconds(response.headers.get("Retry-After"))
        held = held if held is not None else budget.backoff(self._rand)
        self._limiter.hold(family, held)
        return held

    def _send(
        self,
        method: str,
        path: str,
        token: str,
        *,
        family: str,
        params: Mapping[str, str] | None,
        json: Any,
        files: Mapping[str, Any] | None,
        data: Mapping[str, str] | None,
    ) -> tuple[httpx.Response | None, httpx.TransportError | None]:
        try:
            response = self._api.request(
                method,
                path,
                params=params,
                json=json,
                files=files,
                data=data,
                headers={"Authorization": f"Bearer {token}"},
                extensions={"trace": self._gate(family)},
            )
        except httpx.TransportError as exc:
            return None, exc
        return response, None

    @contextmanager
    def download(self, link: Callable[[], str], *, operation: str) -> Iterator[httpx.Response]:
        """Open a result link (a SAS URL: no bearer token) as a stream, retrying until bytes flow.

        `link` fetches a fresh link; it is called again once if storage refuses the first one
        (expired). Failures after the first byte are not retried: the caller consumed part of it.
        """
        response = self._open_download(link, operation)
        try:
            yield response
        finally:
            response.close()

    def _open_download(self, link: Callable[[], str], operation: str) -> httpx.Response:
        budget = _Budget(self._retry, self._monotonic)
        url = link()
        relinked = False
        while True:
            request = self._blobs.build_request("GET", url, headers={"Accept-Encoding": "identity"})
            try:
                response = self._blobs.send(request, stream=True)
            except httpx.TransportError as exc:
                error: DefenderError = DefenderTransportError(
                    f"the result download failed: {type(exc).__name__}", operation=operation
                )
                wait = budget.backoff(self._rand)
            else:
                if response.status_code == 200:
                    return response
                response.read()
                response.close()
                status = response.status_code
                if status == 403 and not relinked:
                    relinked = True
                    self._log.info("%s: storage refused the result link; fetching a fresh one", operation)
                    url = link()
                    continue
                code, message, target = error_details(response)
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                error = error_for(
                    status, code, redact_signature(message), target=target, operation=operation, retry_after=retry_after
                )
                if status == 429 and retry_after is not None:
                    wait = retry_after
                elif status == 429 or status >= 500:
                    wait = budget.backoff(self._rand)
                else:
                    raise error
            if not budget.allows(wait):
                raise error from None
            self._log.warning("%s; retry %d of %d in %.2fs", error, budget.used + 1, self._retry.max_retries, wait)
            budget.spend()
            self._sleep(wait)


def raw_chunks(response: httpx.Response, operation: str, chunk_size: int) -> Iterator[bytes]:
    """The body as it arrives (no content decoding); a connection lost midway is a DefenderTransportError."""
    try:
        yield from response.iter_raw(chunk_size)
    except httpx.TransportError as exc:
        raise DefenderTransportError(
            f"the result download broke off: {type(exc).__name__}", operation=operation
        ) from None


def settle_time(timeout: httpx.Timeout) -> float:
    """How long after giving up on a write the client waits before it trusts a look at the world.

    Only when the waiting stopped before Defender answered (our read timeout, or a gateway's 504)
    may the request still be running there; an answer (a 500, a 503) or a dropped connection ends
    it. The client waited `read` seconds; a request Defender was still working on then may land
    later (an acceptance run saw a PATCH applied 65 s after it was sent). Defender documents no
    bound, so it is given as long again as the client waited (README: to confirm on a real tenant)."""
    return timeout.read if timeout.read is not None else float(DEFAULT_TIMEOUT.read or 60.0)


def _transport_error(failure: httpx.TransportError, operation: str, idempotent: bool) -> DefenderTransportError:
    detail = str(failure)
    return DefenderTransportError(
        f"{type(failure).__name__}: {detail}" if detail else type(failure).__name__,
        operation=operation,
        maybe_applied=not idempotent and not isinstance(failure, _UNSENT),
    )


class _HeldBack(Exception):
    """A request held back before its first byte: its family is held for `seconds` more."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"held back for {seconds:.2f}s")
        self.seconds = seconds


class _Budget:
    """Retries left and time left for one call."""

    def __init__(self, policy: RetryPolicy, monotonic: Callable[[], float]) -> None:
        self._policy = policy
        self._monotonic = monotonic
        self._deadline = monotonic() + policy.budget
        self.used = 0

    def backoff(self, rand: Callable[[], float]) -> float:
        """The wait before the next retry (retry `used + 1`, counted from 1)."""
        return self._policy.delay(self.used + 1, rand)

    def allows(self, wait: float) -> bool:
        return self.used < self._policy.max_retries and self._monotonic() + wait <= self._deadline

    def spend(self) -> None:
        self.used += 1
