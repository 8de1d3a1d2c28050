"""The one composition root: builds the connector from settings, every adapter injectable.

Hosts (the standalone service, the CLI, the demo, the Azure Functions app), the tests and the
benchmarks build the connector here and nowhere else. The adapters take endpoints, credentials
and options (as Azure SDK clients do) and never read the settings; this is where the two meet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Literal, cast

from joedefender.adapters._microsoft.tokens import DEFENDER_SCOPE, TokenProvider, build_credential
from joedefender.adapters._trust import requests_verify
from joedefender.adapters.azure.connection import AzureStorageConnection
from joedefender.adapters.azure.limits import TableRateLimiter
from joedefender.adapters.azure.store import AzureStore
from joedefender.adapters.defender.client import DEFAULT_RETRY as DEFENDER_RETRY
from joedefender.adapters.defender.client import DefenderClient
from joedefender.adapters.defender.limiter import DOCUMENTED_RATES, Limiter, RateLimiter, SharedHolds
from joedefender.adapters.defender.port import DefenderAdapter
from joedefender.adapters.graph import GRAPH_RATES, GraphAlertSource, GraphClient, GraphIncidents
from joedefender.adapters.joe.client import DEFAULT_TIMEOUT, JoeSandboxClient
from joedefender.adapters.joe.parameters import as_joe_takes_them
from joedefender.adapters.joe.port import JoeSandboxAdapter
from joedefender.adapters.joe.retry import DEFAULT_RETRY as JOE_RETRY
from joedefender.adapters.joe.systems import SystemChooser
from joedefender.adapters.sqlite import SqliteStore
from joedefender.domain.indicator_values import AllowList
from joedefender.domain.indicators import IndicatorAction, IndicatorPolicy, Severity
from joedefender.domain.platforms import Platform
from joedefender.domain.policy import ResubmitPolicy
from joedefender.domain.retry import RetryPolicy
from joedefender.domain.triage import AlertFilters
from joedefender.domain.verdicts import Detection
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.context import Context
from joedefender.pipeline.engine import Engine
from joedefender.pipeline.lease import Claims
from joedefender.pipeline.ports import (
    DefenderPort,
    IncidentPort,
    SandboxPort,
    StateStore,
    Store,
    StoreError,
    VersionConflict,
)
from joedefender.settings import ConfigurationError, Settings, SettingsError

logger = logging.getLogger("joedefender.bootstrap")

# --- clients from settings --------------------------------------------------------------------


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
        try:
            for _ in range(5):  # racing holders: re-read and keep the later end
                doc = self._store.get(self.KIND, family)
                if doc is None:
                    if self._store.create(self.KIND, family, {"until": until}) is not None:
                        return
                    continue
                if float(doc.data.get("until", 0.0)) >= until:
                    return
                try:
                    self._store.update(doc, {"until": until})
                except VersionConflict:
                    continue
                return
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


# --- the Azure store

# Defender's documented limits as the Azure adapter takes them: family -> (per minute, per hour).
SHARED_RATES: Mapping[str, tuple[int, int | None]] = {
    str(family): (rate.per_minute, rate.per_hour) for family, rate in {**DOCUMENTED_RATES, **GRAPH_RATES}.items()
}


def open_azure_store(
    values: Mapping[str, str], *, prefix: str | None = None, clock: Callable[[], float] = time.time
) -> AzureStore:
    """The Azure store on the Functions host's storage account: `values` are app settings (the
    environment) with `AzureWebJobsStorage` or its identity form; the prefix is `prefix`, else
    `StoragePrefix`, else `joedefender`."""
    try:
        connection = AzureStorageConnection.from_settings(values)
    except ValueError as exc:
        raise ConfigurationError("AzureWebJobsStorage", str(exc)) from None
    chosen = prefix or values.get("StoragePrefix", "").strip() or Settings.model_fields["storage_prefix"].default
    try:
        return AzureStore.from_connection(connection, prefix=chosen, clock=clock)
    except ValueError as exc:
        raise ConfigurationError("StoragePrefix", str(exc)) from None


def shared_limiter(
    store: AzureStore, *, time_scale: float = 1.0, sleep: Callable[[float], None] = time.sleep
) -> TableRateLimiter:
    """Defender's and Graph's tenant limits as one budget for every instance that shares `store`'s
    account (their families apart: one limiter serves both clients)."""
    return store.rate_limiter(SHARED_RATES, time_scale=time_scale, sleep=sleep)


# --- the connector


def pipeline_config(settings: Settings, *, time_scale: float = 1.0) -> PipelineConfig:
    return PipelineConfig(
        filters=AlertFilters.of(
            settings.defender_alert_detection_source,
            settings.defender_alert_severity,
            settings.defender_alert_status,
            settings.defender_alert_title_filter,
        ),
        resubmit=ResubmitPolicy.of(settings.joe_sandbox_resubmit, settings.joe_sandbox_resubmit_after_days),
        analysis_timeout=settings.joe_sandbox_analysis_job_timeout.total_seconds(),
        machine_availability_timeout=settings.machine_availability_timeout.total_seconds(),
        machine_availability_retry=settings.machine_availability_retry,
        fetch_quarantined_files=settings.fetch_quarantined_files,
        allow_quarantine_restore=settings.allow_quarantine_restore,
        time_scale=time_scale,
        indicators=indicator_policy(settings),
        classify_alerts=settings.defender_alert_classification,
    )


def indicator_policy(settings: Settings) -> IndicatorPolicy:
    """The verdict actions the settings ask for (the settings have validated every value)."""
    actions: dict[tuple[Detection, str], str] = {
        ("malicious", "file"): settings.defender_indicator_action_malicious_file,
        ("malicious", "network"): settings.defender_indicator_action_malicious_network,
        ("suspicious", "file"): settings.defender_indicator_action_suspicious_file,
        ("suspicious", "network"): settings.defender_indicator_action_suspicious_network,
    }
    severities = {
        "malicious": settings.defender_indicator_severity_malicious,
        "suspicious": settings.defender_indicator_severity_suspicious,
    }
    return IndicatorPolicy(
        enabled=settings.defender_indicators_enabled,
        verdicts=cast(frozenset[Detection], settings.defender_indicator_verdicts),
        actions=cast(dict[tuple[Detection, Literal["file", "network"]], IndicatorAction], actions),
        severities=cast(dict[Detection, Severity], severities),
        expiration_days=settings.defender_indicator_expiration_days,
        rbac_group_names=settings.defender_indicator_rbac_group_names,
        allow=AllowList.extended(
            settings.defender_indicator_allow_list, platforms=settings.defender_indicator_shared_platforms
        ),
        per_sample_cap=settings.defender_indicator_max_per_sample,
        per_hour_cap=settings.defender_indicator_max_per_hour,
        tenant_headroom=settings.defender_indicator_tenant_headroom,
    )


@dataclass
class Connector:
    settings: Settings
    store: Store
    defender: DefenderPort
    sandbox: SandboxPort
    engine: Engine
    incidents: IncidentPort | None = None  # with DefenderIncidentTags or DefenderIncidentComments

    @property
    def ctx(self) -> Context:
        return self.engine.ctx


@contextmanager
def open_connector(
    settings: Settings,
    *,
    time_scale: float = 1.0,
    store: Store | None = None,
    defender: DefenderPort | None = None,
    sandbox: SandboxPort | None = None,
    incidents: IncidentPort | None = None,
    now: Callable[[], float] = time.time,
) -> Iterator[Connector]:
    """The connector on `settings`; an adapter given here is used instead of the one the settings
    describe (and is not closed here). `time_scale` (real seconds per nominal second) is 1 against
    a real tenant; the demo and the tests set it to the emulators' scale so the connector's waits
    shrink with their clock."""
    settings = checked_settings(settings)
    claims = Claims()  # the steps' leases: the clients' waits end when the waiting step lost its own
    with ExitStack() as owned:
        if store is None:
            store = SqliteStore(settings.state_path)
            owned.callback(store.close)
        if defender is None:
            # On Azure every instance of the app shares one budget of the tenant's limits.
            limiter = (
                shared_limiter(store, time_scale=time_scale, sleep=claims.sleep)
                if isinstance(store, AzureStore)
                else None
            )
            defender_wire = owned.enter_context(
                defender_client(
                    settings,
                    time_scale=time_scale,
                    sleep=claims.sleep,
                    shared_holds=StoredHolds(store),
                    limiter=limiter,
                )
            )
            graph_wire = (
                owned.enter_context(
                    graph_client(
                        settings,
                        time_scale=time_scale,
                        sleep=claims.sleep,
                        shared_holds=StoredHolds(store),
                        limiter=limiter,
                    )
                )
                if settings.uses_graph
                else None
            )
            defender = alert_source(settings, DefenderAdapter(defender_wire), graph_wire)
            if incidents is None and graph_wire is not None and settings.incident_verdicts:
                incidents = GraphIncidents(graph_wire)
        if sandbox is None:
            sandbox_wire = owned.enter_context(
                sandbox_client(settings, base_delay=max(0.01, time_scale), sleep=claims.sleep)
            )
            sandbox = JoeSandboxAdapter(sandbox_wire, system_chooser(sandbox_wire, settings))
        ctx = Context(store, defender, sandbox, pipeline_config(settings, time_scale=time_scale), now, claims)
        yield Connector(settings, store, defender, sandbox, Engine(ctx), incidents)


@contextmanager
def open_azure_connector(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    time_scale: float = 1.0,
    now: Callable[[], float] = time.time,
) -> Iterator[tuple[Connector, AzureStore]]:
    """The connector as every Azure Functions instance runs it: on the Azure store in the host's
    storage account (`environ` are the app settings), whose table also holds the Defender rate
    budget all instances share; the store is also returned as what it is, for push mode."""
    with ExitStack() as owned:
        store = open_azure_store(environ, prefix=settings.storage_prefix, clock=now)
        owned.callback(store.close)
        connector = owned.enter_context(open_connector(settings, time_scale=time_scale, store=store, now=now))
        yield connector, store
