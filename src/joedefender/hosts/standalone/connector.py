"""Builds the connector from settings: store, clients, config, engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from joedefender.clients.joe.client import JoeSandboxClient
from joedefender.clients.mde.client import DefenderClient
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.context import Context
from joedefender.pipeline.engine import Engine
from joedefender.settings import Settings
from joedefender.stores.sqlite import SqliteStore


@dataclass
class Connector:
    settings: Settings
    store: SqliteStore
    defender: DefenderClient
    sandbox: JoeSandboxClient
    engine: Engine

    @property
    def ctx(self) -> Context:
        return self.engine.ctx


@contextmanager
def open_connector(settings: Settings, *, time_scale: float = 1.0) -> Iterator[Connector]:
    """`time_scale` (real seconds per nominal second) is 1 against a real tenant; the demo and the
    tests set it to the emulators' scale so the connector's waits shrink with their clock."""
    store = SqliteStore(settings.state_path)
    defender = DefenderClient.from_settings(settings, time_scale=time_scale)
    sandbox = JoeSandboxClient.from_settings(settings, base_delay=max(0.01, time_scale))
    try:
        ctx = Context(store, defender, sandbox, PipelineConfig.from_settings(settings, time_scale=time_scale))
        yield Connector(settings, store, defender, sandbox, Engine(ctx))
    finally:
        sandbox.close()
        defender.close()
        store.close()
