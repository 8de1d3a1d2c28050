"""What both API clients are built of, as Azure SDK clients are: the endpoint, a credential (a
token provider for the API's audience) and options, over one retrying, rate-limited transport."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar, Self

import httpx

from joedefender.adapters._microsoft.limiter import Limiter, Rate, RateLimiter
from joedefender.adapters._microsoft.tokens import TokenProvider
from joedefender.adapters._microsoft.transport import DEFAULT_TIMEOUT, Transport
from joedefender.domain.retry import RetryPolicy

# The defaults of DefenderApiMaxRetry (5) and DefenderApiRetryTimeout (5 minutes), which hold for
# both APIs; full jitter, so the many workers that one outage failed together do not come back together.
DEFAULT_RETRY = RetryPolicy(max_retries=5, budget=300.0, first=1.0, cap=60.0, jitter="full")


class ApiClient:
    """One API of one tenant. A subclass names the API's documented quotas (`RATES`, kept by an
    in-process limiter unless a `limiter`, one shared by every instance say, is given), its retry
    policy and its logger. `sleep` is how the client waits before a retry (bootstrap passes one
    that ends early when the waiting step lost its work item's lease)."""

    RATES: ClassVar[Mapping[str, Rate]]
    RETRY: ClassVar[RetryPolicy] = DEFAULT_RETRY
    LOG_NAME: ClassVar[str]

    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        *,
        ca_bundle: Path | None = None,
        retry: RetryPolicy | None = None,
        limiter: Limiter | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._tokens = token_provider
        self.limiter: Limiter = limiter if limiter is not None else RateLimiter(self.RATES, sleep=sleep)
        self._base_url = base_url.rstrip("/")
        self._transport = Transport(
            self._base_url,
            token_provider,
            limiter=self.limiter,
            retry=retry or self.RETRY,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            ca_bundle=ca_bundle,
            sleep=sleep,
            log_name=self.LOG_NAME,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()
        self._tokens.close()
