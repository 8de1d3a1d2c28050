"""The connector: the store, the ports over the clients the settings describe, and the
application facade hosts work through (`Connector.app`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from joedefender.adapters.azure.store import AzureStore
from joedefender.adapters.defender.port import DefenderAdapter
from joedefender.adapters.graph import GraphIncidents
from joedefender.adapters.joe.port import JoeSandboxAdapter
from joedefender.adapters.sqlite import SqliteStore
from joedefender.bootstrap.azure import open_azure_store, outbox_relay, shared_limiter
from joedefender.bootstrap.clients import (
    StoredHolds,
    alert_source,
    checked_settings,
    defender_client,
    graph_client,
    sandbox_client,
    system_chooser,
)
from joedefender.bootstrap.policies import pipeline_config
from joedefender.pipeline.clock import Clock
from joedefender.pipeline.context import Context
from joedefender.pipeline.facade import Application, Status
from joedefender.pipeline.lease import Claims
from joedefender.pipeline.ports import DefenderPort, IncidentPort, SandboxPort, Store
from joedefender.settings import Settings


@dataclass
class Connector:
    settings: Settings
    store: Store
    defender: DefenderPort
    sandbox: SandboxPort
    app: Application  # what hosts work through
    incidents: IncidentPort | None = None  # with DefenderIncidentTags or DefenderIncidentComments

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
    incidents: IncidentPort | None = None,
) -> Iterator[Connector]:
    """The connector on `settings`; an adapter given here is used instead of the one the settings
    describe (and is not closed here). The `clock`'s scale (real seconds per nominal second) is 1
    against a real tenant; the demo and the tests set it to the emulators' scale so the
    connector's waits shrink with their clock."""
    settings = checked_settings(settings)
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
            holds = StoredHolds(store)
            defender_wire = owned.enter_context(
                defender_client(
                    settings, time_scale=clock.scale, sleep=claims.sleep, shared_holds=holds, limiter=limiter
                )
            )
            graph_wire = (
                owned.enter_context(
                    graph_client(
                        settings, time_scale=clock.scale, sleep=claims.sleep, shared_holds=holds, limiter=limiter
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
                sandbox_client(settings, base_delay=max(0.01, clock.scale), sleep=claims.sleep)
            )
            sandbox = JoeSandboxAdapter(sandbox_wire, system_chooser(sandbox_wire, settings))
        ctx = Context(store, defender, sandbox, pipeline_config(settings), clock, claims, incidents)
        app = Application(ctx, relay=outbox_relay(store, clock))
        yield Connector(settings, store, defender, sandbox, app, incidents)


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
def open_azure_status(environ: Mapping[str, str]) -> Iterator[Status]:
    """What the page and `status` show on Azure, from the store in the host's storage account
    alone (`environ` are the app settings): no Defender or Joe setting needs to be valid."""
    store = open_azure_store(environ)
    try:
        yield Status(store, Clock())
    finally:
        store.close()


@contextmanager
def open_status(state_path: Path) -> Iterator[Status]:
    """What `status` shows, from the state file alone (no network setting needs to be valid)."""
    with SqliteStore(state_path) as store:
        yield Status(store, Clock())
