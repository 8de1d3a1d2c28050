"""What the benchmarks share: every alert of a scenario taken in and worked off by a worker pool; the
command line and the report."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

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


def command_line(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring as the help, and `--json`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object on one line")
    return parser


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    """The result on stdout: one line of JSON with `--json`, indented otherwise."""
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
