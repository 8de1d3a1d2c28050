"""What the benchmarks share: every alert of a scenario taken in and worked off by a worker pool."""

from __future__ import annotations

import time

from joedefender.bootstrap import open_connector
from joedefender.hosts.standalone.workers import WorkerPool
from joedefender.pipeline.clock import Clock
from joedefender.settings import Settings
from joedefender_emulators.scenario import Scenario


def process_all(scenario: Scenario, settings: Settings, time_scale: float, workers: int) -> float:
    """Take in every alert of the scenario, run `workers` until idle; the real seconds it took."""
    with open_connector(settings, clock=Clock(scale=time_scale)) as connector:
        started = time.perf_counter()
        for alert in scenario.defender.alerts:
            connector.app.receive(alert["id"], source="bench")
        pool = WorkerPool(connector.app, workers)
        pool.start()
        pool.wait_idle()
        pool.stop()
        return time.perf_counter() - started
