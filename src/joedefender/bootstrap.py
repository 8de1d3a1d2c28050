"""The one composition root: builds the connector from settings, every adapter injectable.

Hosts (the standalone service, the CLI, the demo, the Azure Functions app), the tests and the
benchmarks build the connector here and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from joedefender.adapters.defender.port import DefenderAdapter
from joedefender.adapters.joe.port import JoeSandboxAdapter
from joedefender.adapters.sqlite import SqliteStore
from joedefender.domain.policy import ResubmitPolicy
from joedefender.domain.triage import AlertFilters
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.context import Context
from joedefender.pipeline.engine import Engine
from joedefender.pipeline.ports import DefenderPort, SandboxPort, Store
from joedefender.settings import Settings

# --- the connector


def pipeline_config(settings: Settings, *, time_scale: float = 1.0) -> PipelineConfig:
    return PipelineConfig(
        filters=AlertFilters.of(
            settings.defender_alert_detection_source,
            settings.defender_alert_severity,
            settings.defender_alert_status,
            settings.defender_alert_title_filter,
        ),
        resubmit=ResubmitPolicy.from_settings(settings.joe_sandbox_resubmit, settings.joe_sandbox_resubmit_after_days),
        analysis_timeout=settings.joe_sandbox_analysis_job_timeout.total_seconds(),
        machine_availability_timeout=settings.machine_availability_timeout.total_seconds(),
        machine_availability_retry=settings.machine_availability_retry,
        fetch_quarantined_files=settings.fetch_quarantined_files,
        time_scale=time_scale,
    )


@dataclass
class Connector:
    settings: Settings
    store: Store
    defender: DefenderPort
    sandbox: SandboxPort
    engine: Engine

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
    now: Callable[[], float] = time.time,
) -> Iterator[Connector]:
    """The connector on `settings`; an adapter given here is used instead of the one the settings
    describe (and is not closed here). `time_scale` (real seconds per nominal second) is 1 against
    a real tenant; the demo and the tests set it to the emulators' scale so the connector's waits
    shrink with their clock."""
    with ExitStack() as owned:
        if store is None:
            store = SqliteStore(settings.state_path)
            owned.callback(store.close)
        if defender is None:
            defender_wire = owned.enter_context(defender_client(settings, time_scale=time_scale))
            defender = DefenderAdapter(defender_wire)
        if sandbox is None:
            sandbox_wire = owned.enter_context(sandbox_client(settings, base_delay=max(0.01, time_scale)))
            sandbox = JoeSandboxAdapter(sandbox_wire)
        ctx = Context(store, defender, sandbox, pipeline_config(settings, time_scale=time_scale), now)
        yield Connector(settings, store, defender, sandbox, Engine(ctx))
