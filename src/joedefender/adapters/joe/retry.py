"""Bounded retries with exponential backoff and jitter for transient Joe Sandbox failures.

jbxapi itself retries only request timeouts, with a backoff (4**i / 10 s) that grows without
bound; the client therefore asks jbxapi for a single attempt and retries everything here, under
both limits JoeAz's settings give: a number of retries and a total time budget (the shared
`joedefender.domain.retry.RetryPolicy`, with equal jitter).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from joedefender.adapters.joe.errors import JoeSandboxError, JoeUnavailableError
from joedefender.domain.retry import RetryPolicy

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_RETRY = RetryPolicy(max_retries=3, budget=300.0, first=1.0, cap=60.0, jitter="equal")


def call_with_retries(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    *,
    operation: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `attempt` until it succeeds, fails permanently, or the policy's limits are reached.

    `attempt` raises our error types; only `JoeUnavailableError` is retried. The sleeps here are
    the client's only ones.
    """
    deadline = clock() + policy.budget
    retries = 0
    while True:
        try:
            return attempt()
        except JoeUnavailableError as exc:
            remaining = deadline - clock()
            if retries >= policy.max_retries or remaining <= 0:
                raise _exhausted(exc, retries + 1) from None
            retries += 1
            wait = min(policy.delay(retries), remaining)
            logger.warning(
                "Joe Sandbox %s failed (%s); retry %d of %d in %.1f s",
                operation,
                exc.message,
                retries,
                policy.max_retries,
                wait,
            )
            sleep(wait)


def _exhausted(last: JoeSandboxError, attempts: int) -> JoeUnavailableError:
    suffix = "attempt" if attempts == 1 else "attempts"
    return JoeUnavailableError(f"{last.message} (gave up after {attempts} {suffix})", code=last.code, attempts=attempts)
