"""The one composition root: builds the connector from settings, every adapter injectable.

Hosts (the standalone service, the CLI, the demo, the Azure Functions app), the tests and the
benchmarks build the connector here and nowhere else, and hosts work through the application
facade it builds (`Connector.app`). The adapters take endpoints, credentials and options (as
Azure SDK clients do) and never read the settings; this is where the two meet. `check` here
tries the clients the settings describe, for `joedefender check`.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, cast

from joedefender.adapters._trust import requests_verify
from joedefender.adapters.azure.connection import AzureStorageConnection
from joedefender.adapters.azure.limits import TableRateLimiter
from joedefender.adapters.azure.store import RELAY_GRACE, AzureStore
from joedefender.adapters.defender.auth import TokenProvider, build_credential
from joedefender.adapters.defender.client import DEFAULT_RETRY as DEFENDER_RETRY
from joedefender.adapters.defender.client import DefenderClient
from joedefender.adapters.defender.errors import DefenderError, ForbiddenError, NotFoundError
from joedefender.adapters.defender.limiter import DOCUMENTED_RATES, Limiter, RateLimiter, SharedHolds
from joedefender.adapters.defender.port import DefenderAdapter
from joedefender.adapters.joe.client import DEFAULT_TIMEOUT, JoeSandboxClient
from joedefender.adapters.joe.errors import JoeSandboxError
from joedefender.adapters.joe.port import JoeSandboxAdapter
from joedefender.adapters.joe.retry import DEFAULT_RETRY as JOE_RETRY
from joedefender.adapters.sqlite import SqliteStore
from joedefender.domain.indicators import AllowList, IndicatorAction, IndicatorPolicy, Severity
from joedefender.domain.policy import ResubmitPolicy
from joedefender.domain.triage import AlertFilters
from joedefender.domain.verdicts import Detection
from joedefender.pipeline.clock import Clock
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.context import Context
from joedefender.pipeline.facade import Application, Status
from joedefender.pipeline.lease import Claims
from joedefender.pipeline.ports import DefenderPort, SandboxPort, StateStore, Store, StoreError
from joedefender.pipeline.records import Data, upsert
from joedefender.settings import ConfigurationError, Settings

logger = logging.getLogger("joedefender.bootstrap")

# --- clients from settings --------------------------------------------------------------------


def token_provider(settings: Settings) -> TokenProvider:
    """Defender API tokens for the app registration the settings name; the client secret is
    blanked out of whatever the token endpoint answers."""
    return TokenProvider(
        lambda: build_credential(
            settings.azure_tenant_id,
            settings.azure_client_id,
            settings.azure_client_secret,
            authority_host=settings.azure_authority_host,
            ca_bundle=settings.tls_ca_bundle,
        ),
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


def defender_client(
    settings: Settings,
    *,
    time_scale: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    shared_holds: SharedHolds | None = None,
    limiter: Limiter | None = None,
) -> DefenderClient:
    """`time_scale` (real seconds per documented second) shrinks the limiter's windows to match
    an emulator running a scaled clock; leave it at 1 for a real tenant. `sleep` is every wait the
    client makes; `shared_holds` share its 429 holds with other processes; a `limiter` given (one
    shared by every instance, say) replaces the in-process one, and then both are ignored."""
    return DefenderClient(
        settings.defender_api_base_url,
        token_provider(settings),
        ca_bundle=settings.tls_ca_bundle,
        retry=replace(
            DEFENDER_RETRY,
            max_retries=settings.defender_api_max_retry,
            budget=settings.defender_api_retry_timeout.total_seconds(),
        ),
        limiter=limiter or RateLimiter(time_scale=time_scale, sleep=sleep, shared_holds=shared_holds),
        sleep=sleep,
    )


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


# --- the Azure store

# Defender's documented limits as the Azure adapter takes them: family -> (per minute, per hour).
SHARED_RATES: Mapping[str, tuple[int, int | None]] = {
    str(family): (rate.per_minute, rate.per_hour) for family, rate in DOCUMENTED_RATES.items()
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
    """Defender's tenant limits as one budget for every instance that shares `store`'s account."""
    return store.rate_limiter(SHARED_RATES, time_scale=time_scale, sleep=sleep)


# --- the connector


def pipeline_config(settings: Settings) -> PipelineConfig:
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
        allow=AllowList.extended(settings.defender_indicator_allow_list),
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
    app: Application  # what hosts work through

    @property
    def ctx(self) -> Context:
        """The records and ports, for tests and benchmarks (hosts use `app`)."""
        return self.app.ctx


@contextmanager
def open_connector(
    settings: Settings,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    defender: DefenderPort | None = None,
    sandbox: SandboxPort | None = None,
) -> Iterator[Connector]:
    """The connector on `settings`; an adapter given here is used instead of the one the settings
    describe (and is not closed here). The `clock`'s scale (real seconds per nominal second) is 1
    against a real tenant; the demo and the tests set it to the emulators' scale so the
    connector's waits shrink with their clock."""
    clock = clock or Clock()
    claims = Claims()  # the steps' leases: the clients' waits end when the waiting step lost its own
    with ExitStack() as owned:
        if store is None:
            store = SqliteStore(settings.state_path)
            owned.callback(store.close)
        if defender is None:
            # On Azure every instance of the app shares one budget of the tenant's limits.
            limiter = (
                shared_limiter(store, time_scale=clock.scale, sleep=claims.sleep)
                if isinstance(store, AzureStore)
                else None
            )
            defender_wire = owned.enter_context(
                defender_client(
                    settings,
                    time_scale=clock.scale,
                    sleep=claims.sleep,
                    shared_holds=StoredHolds(store),
                    limiter=limiter,
                )
            )
            defender = DefenderAdapter(defender_wire)
        if sandbox is None:
            sandbox_wire = owned.enter_context(
                sandbox_client(settings, base_delay=max(0.01, clock.scale), sleep=claims.sleep)
            )
            sandbox = JoeSandboxAdapter(sandbox_wire)
        ctx = Context(store, defender, sandbox, pipeline_config(settings), clock, claims)
        yield Connector(settings, store, defender, sandbox, Application(ctx, relay=_relay(store, clock)))


def _relay(store: Store, clock: Clock) -> Callable[[], int] | None:
    """The Azure store's outbox relay: what a crash left in an outbox is sent, and items overdue
    by RELAY_GRACE whose message was lost are woken."""
    if not isinstance(store, AzureStore):
        return None
    return lambda: store.relay_outbox(clock.now(), grace=clock.real(RELAY_GRACE))


@contextmanager
def open_azure_connector(
    settings: Settings, environ: Mapping[str, str], *, clock: Clock | None = None
) -> Iterator[tuple[Connector, AzureStore]]:
    """The connector as every Azure Functions instance runs it: on the Azure store in the host's
    storage account (`environ` are the app settings), whose table also holds the Defender rate
    budget all instances share; the store is also returned as what it is, for push mode."""
    clock = clock or Clock()
    with ExitStack() as owned:
        store = open_azure_store(environ, prefix=settings.storage_prefix, clock=clock.now)
        owned.callback(store.close)
        connector = owned.enter_context(open_connector(settings, clock=clock, store=store))
        yield connector, store


@contextmanager
def open_status(state_path: Path) -> Iterator[Status]:
    """What `status` shows, from the state file alone (no network setting needs to be valid)."""
    with SqliteStore(state_path) as store:
        yield Status(store, Clock())


# --- checking the settings against the services (`joedefender check`) --------------------------

_NO_MACHINE = "0" * 40


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def token_roles(token: str) -> set[str]:
    """The `roles` claim of a JWT access token (read, not verified: Defender verifies it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return set()
    roles = claims.get("roles") if isinstance(claims, dict) else None
    return {str(r) for r in roles} if isinstance(roles, list) else set()


def _probe(name: str, call: Callable[[], object], *, absent_is_ok: bool = False) -> CheckResult:
    try:
        call()
    except NotFoundError:
        if absent_is_ok:
            return CheckResult(name, True, "allowed")
        return CheckResult(name, False, "not found")
    except ForbiddenError as exc:
        return CheckResult(name, False, f"forbidden: {exc.message}")
    except DefenderError as exc:
        return CheckResult(name, False, f"{type(exc).__name__}: {exc.message}")
    return CheckResult(name, True, "allowed")


def check(settings: Settings, *, time_scale: float = 1.0) -> list[CheckResult]:
    """Get a token, try each Defender permission with one harmless call where one exists (the
    rest are read from the token's `roles` claim), check Joe Sandbox and its quota."""
    results = [CheckResult("settings", True, "valid"), *_token_checks(settings)]
    with defender_client(settings, time_scale=time_scale) as defender:
        since = datetime.now(UTC) - timedelta(minutes=5)
        results.append(
            _probe("Alert.Read.All (list alerts)", lambda: next(defender.list_alerts(since, page_size=1), None))
        )
        results.append(
            _probe("Machine.Read.All (read a machine)", lambda: defender.get_machine(_NO_MACHINE), absent_is_ok=True)
        )
        results.append(_probe("Library.Manage (list the library)", defender.list_library_files))
    with sandbox_client(settings) as joe:
        try:
            online = joe.is_online()
            results.append(CheckResult("Joe Sandbox online", online, "online" if online else "offline"))
            account = joe.account()
            quota = (
                f"plan {account.type}; submissions left today: {account.daily_remaining}, "
                f"this month: {account.monthly_remaining}"
            )
            results.append(CheckResult("Joe Sandbox quota", account.daily_remaining != 0, quota))
        except JoeSandboxError as exc:
            results.append(CheckResult("Joe Sandbox", False, f"{type(exc).__name__}: {exc}"))
    return results


def _token_checks(settings: Settings) -> list[CheckResult]:
    tokens = token_provider(settings)
    try:
        roles = token_roles(tokens.token())
        results = [CheckResult("Entra token", True, f"granted roles: {', '.join(sorted(roles)) or 'none'}")]
    except DefenderError as exc:
        return [CheckResult("Entra token", False, exc.message)]
    finally:
        tokens.close()
    for permission in ("Alert.ReadWrite.All", "Machine.LiveResponse") if roles else ():
        granted = permission in roles
        results.append(CheckResult(permission, granted, "granted" if granted else "not granted to the app"))
    return results
