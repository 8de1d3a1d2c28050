"""The clients the settings describe: tokens, the Defender, Graph and Joe Sandbox clients, the
alert source the pipeline runs on, and the checks only an adapter can make of the settings.

The adapters take endpoints, credentials and options (as Azure SDK clients do) and never read
the settings; this is where the two meet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from joedefender.adapters._microsoft.tokens import DEFENDER_SCOPE, TokenProvider, build_credential
from joedefender.adapters._trust import requests_verify
from joedefender.adapters.defender.client import DEFAULT_RETRY as DEFENDER_RETRY
from joedefender.adapters.defender.client import DefenderClient
from joedefender.adapters.defender.limiter import DOCUMENTED_RATES, Limiter, RateLimiter, SharedHolds
from joedefender.adapters.graph import GRAPH_RATES, GraphAlertSource, GraphClient
from joedefender.adapters.joe.client import DEFAULT_TIMEOUT, JoeSandboxClient
from joedefender.adapters.joe.parameters import as_joe_takes_them
from joedefender.adapters.joe.retry import DEFAULT_RETRY as JOE_RETRY
from joedefender.adapters.joe.systems import SystemChooser
from joedefender.domain.platforms import Platform
from joedefender.domain.retry import RetryPolicy
from joedefender.pipeline.ports import DefenderPort, StateStore, StoreError
from joedefender.pipeline.records import Data, upsert
from joedefender.settings import Settings, SettingsError

logger = logging.getLogger("joedefender.bootstrap")


def token_provider(settings: Settings, *, scope: str = DEFENDER_SCOPE) -> TokenProvider:
    """Tokens for the app registration the settings name, for the MDE API (or `scope`: Graph's is
    `settings.graph_scope`); the client secret is blanked out of whatever the token endpoint answers."""
    return TokenProvider(
        lambda: build_credential(
            settings.azure_tenant_id,
            settings.azure_client_id,
            settings.azure_client_secret,
            authority_host=settings.azure_authority_host,
            ca_bundle=settings.tls_ca_bundle,
        ),
        scope=scope,
        redact=(settings.azure_client_secret,),
    )


class StoredHolds(SharedHolds):
    """The Defender limiter's Retry-After holds as documents in the state store, so every process
    on one state file waits out a 429 that any of them met, not only the threads of that one.

    A store that is busy or away costs only the sharing: the process's own hold still applies.
    """

    KIND = "throttle"

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def held_until(self) -> dict[str, float]:
        try:
            docs = self._store.list(self.KIND)
        except StoreError as exc:
            logger.debug("the shared rate limit holds could not be read: %s", exc)
            return {}
        return {doc.key: float(doc.data.get("until", 0.0)) for doc in docs}

    def hold(self, family: str, until: float) -> None:
        def later(data: Data | None) -> Data | None:  # racing holders: keep the later end
            return None if data is not None and float(data.get("until", 0.0)) >= until else {"until": until}

        try:
            upsert(self._store, self.KIND, family, later)
        except StoreError as exc:
            logger.debug("the shared rate limit hold on %s could not be saved: %s", family, exc)


def defender_retry(settings: Settings) -> RetryPolicy:
    """The retry policy of DefenderApiMaxRetry and DefenderApiRetryTimeout: they hold for both
    Microsoft APIs (the MDE API and Graph's security API)."""
    return replace(
        DEFENDER_RETRY,
        max_retries=settings.defender_api_max_retry,
        budget=settings.defender_api_retry_timeout.total_seconds(),
    )


def defender_client(
    settings: Settings,
    *,
    time_scale: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    shared_holds: SharedHolds | None = None,
    limiter: Limiter | None = None,
    timeout: float | None = None,
) -> DefenderClient:
    """`time_scale` (real seconds per documented second) shrinks the limiter's windows to match
    an emulator running a scaled clock; leave it at 1 for a real tenant. `sleep` is every wait the
    client makes; `shared_holds` share its 429 holds with other processes; a `limiter` given (one
    shared by every instance, say) replaces the in-process one, and then both are ignored.
    `timeout` (seconds) replaces the client's own request timeouts (tests of a slow Defender)."""
    return DefenderClient(
        settings.defender_api_base_url,
        token_provider(settings),
        ca_bundle=settings.tls_ca_bundle,
        retry=defender_retry(settings),
        limiter=limiter or RateLimiter(DOCUMENTED_RATES, time_scale=time_scale, sleep=sleep, shared_holds=shared_holds),
        sleep=sleep,
        **({"timeout": timeout} if timeout is not None else {}),
    )


def graph_client(
    settings: Settings,
    *,
    time_scale: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    shared_holds: SharedHolds | None = None,
    limiter: Limiter | None = None,
    timeout: float | None = None,
) -> GraphClient:
    """The Graph security API client, as `defender_client` (the same retry settings; Graph's own
    150-a-minute budget, shared like Defender's)."""
    return GraphClient(
        settings.graph_api_base_url,
        token_provider(settings, scope=settings.graph_scope),
        ca_bundle=settings.tls_ca_bundle,
        retry=defender_retry(settings),
        limiter=limiter or RateLimiter(GRAPH_RATES, time_scale=time_scale, sleep=sleep, shared_holds=shared_holds),
        sleep=sleep,
        **({"timeout": timeout} if timeout is not None else {}),
    )


def alert_source(settings: Settings, mde: DefenderPort, graph: GraphClient | None) -> DefenderPort:
    """The DefenderPort the pipeline runs on: the MDE adapter, or (`AlertSource=graph`) alerts
    through Graph composed with it for machines and live response."""
    if settings.alert_source != "graph":
        return mde
    if graph is None:
        raise ValueError("AlertSource=graph needs a Graph client")
    return GraphAlertSource(graph, mde, service_sources=sorted(settings.graph_service_sources))


def checked_settings(settings: Settings) -> Settings:
    """`settings` with what only an adapter knows checked: Joe's analysis parameters, against
    jbxapi's list of names and kinds (loading the settings does not load jbxapi). A problem is a
    SettingsError naming the setting, as at load."""
    parameters, problems = as_joe_takes_them(settings.joe_sandbox_analysis_parameters)
    if problems:
        raise SettingsError([("JoeSandboxAnalysisParameters", "; ".join(problems))])
    return settings.model_copy(update={"joe_sandbox_analysis_parameters": parameters})


def sandbox_client(
    settings: Settings,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    base_delay: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> JoeSandboxClient:
    """`base_delay` is the first retry's wait (seconds) before jitter; tests shrink it."""
    return JoeSandboxClient(
        settings.joe_sandbox_api_url,
        settings.joe_sandbox_api_key,
        accept_tac=settings.joe_sandbox_accept_tac,
        timeout=timeout,
        retry=replace(
            JOE_RETRY,
            max_retries=settings.joe_sandbox_api_max_retry,
            budget=settings.joe_sandbox_api_retry_timeout.total_seconds(),
            first=base_delay,
        ),
        verify_ssl=requests_verify(settings.tls_ca_bundle),  # the bundle adds to certifi's roots
        analysis_parameters=settings.joe_sandbox_analysis_parameters,
        systems=settings.joe_sandbox_systems,
        sleep=sleep,
    )


def system_chooser(client: JoeSandboxClient, settings: Settings) -> SystemChooser:
    """The Joe systems per device platform, from the settings (else the server's list)."""
    return SystemChooser(
        client,
        {
            Platform.WINDOWS: settings.joe_sandbox_systems,
            Platform.LINUX: settings.joe_sandbox_systems_linux,
            Platform.MACOS: settings.joe_sandbox_systems_macos,
        },
    )
