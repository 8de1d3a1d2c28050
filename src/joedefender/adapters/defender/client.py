"""The Defender for Endpoint operations the connector uses, over the retrying, rate-limited transport.

One client may be shared by all threads of a process: the limiter and the token cache are locked
and httpx clients are thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from joedefender.adapters._microsoft.tokens import TokenProvider
from joedefender.adapters._microsoft.transport import DEFAULT_TIMEOUT, Transport
from joedefender.adapters.defender._alerts import AlertCalls
from joedefender.adapters.defender._calls import odata_string
from joedefender.adapters.defender._indicators import IndicatorCalls
from joedefender.adapters.defender._machines import MachineCalls
from joedefender.adapters.defender.limiter import DOCUMENTED_RATES, Limiter, RateLimiter
from joedefender.domain.retry import RetryPolicy

__all__ = ["DEFAULT_RETRY", "DefenderClient", "odata_string"]

# The defaults of DefenderApiMaxRetry (5) and DefenderApiRetryTimeout (5 minutes); full jitter, so
# the many workers that one outage failed together do not come back together.
DEFAULT_RETRY = RetryPolicy(max_retries=5, budget=300.0, first=1.0, cap=60.0, jitter="full")


class DefenderClient(AlertCalls, MachineCalls, IndicatorCalls):
    """Alerts, machines, live response, library and indicators of one Defender tenant.

    Built as Azure SDK clients are: the endpoint, a credential (the token provider) and options;
    `joedefender.bootstrap.defender_client` builds one from the settings.
    """

    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        *,
        ca_bundle: Path | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        limiter: Limiter | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`sleep` is how the client waits before a retry (bootstrap passes one that ends early
        when the step waiting lost its work item's lease)."""
        self._tokens = token_provider
        self.limiter: Limiter = limiter if limiter is not None else RateLimiter(DOCUMENTED_RATES, sleep=sleep)
        self._transport = Transport(
            base_url,
            token_provider,
            limiter=self.limiter,
            retry=retry,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            ca_bundle=ca_bundle,
            sleep=sleep,
        )
        self._base_url = base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"DefenderClient({self._base_url!r})"

    def __enter__(self) -> DefenderClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()
        self._tokens.close()

    # --- alerts -------------------------------------------------------------------------------------
