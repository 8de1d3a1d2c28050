"""An outbreak at the speed the tenant's limits allow: how close the connector comes to the bound.

Builds a tenant of M machines, S distinct files and N alerts (alert a is on machine a mod M and
carries file a mod S; every machine carries every file), runs K connector instances (each its
own engine, clients and client-side limiter, all on one store) against the emulators with the
documented rate limits ON and a scaled clock, and prints what it cost and how long it took on
the emulated clock, next to the bound the documented limits and the scenario's service times
allow (`bench.bound`). The alerts arrive by one poll (`--intake poller`, with their evidence) or
as bare ids, as a webhook or the CLI delivers them (`--intake ids`).

    .venv/bin/python -m bench.outbreak --alerts 1000 --machines 200 --samples 20 --json

`connector_cpu_s` is the CPU time of the connector's threads (the workers and the intake; the
emulators run in the same process, on threads of their own). `peak_rss_mb` is the whole
process's, emulators included.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.bound import outbreak_bound
from bench.pipeline_throughput import build
from joedefender.adapters.sqlite import SqliteStore
from joedefender.bootstrap import Connector, open_azure_store, open_connector
from joedefender.domain.comments import MARKER_PREFIX
from joedefender.domain.jobs import JobState
from joedefender.hosts.standalone.workers import WorkerPool
from joedefender.pipeline.clock import Clock
from joedefender.pipeline.ports import Store
from joedefender.settings import Settings
from joedefender_emulators.runner import Emulators
from joedefender_emulators.scenario import parse_scenario

_AUTH_ROUTES = ("token", "openid-configuration")  # the sign-in, not Defender's API


def open_store(kind: str, folder: Path, azure: Mapping[str, str] | None = None) -> Store:
    """The store every instance shares: the SQLite file in `folder`, or the Azure store on the
    storage account and prefix `azure` names (app settings: AzureWebJobsStorage, StoragePrefix)."""
    if kind == "sqlite":
        return SqliteStore(folder / "outbreak.db")
    if kind == "azure" and azure is not None:
        return open_azure_store(azure)
    raise ValueError(f"unknown store {kind!r}")


@contextmanager
def azure_account(folder: Path) -> Iterator[dict[str, str]]:
    """The storage account for `--store azure`: the one AzureWebJobsStorage names in the
    environment, else an Azurite started for the run; a prefix of the run's own on it."""
    prefix = {"StoragePrefix": f"bench{uuid.uuid4().hex[:10]}"}
    given = os.environ.get("AzureWebJobsStorage")  # noqa: SIM112 - the Functions host's own name
    if given:
        yield {"AzureWebJobsStorage": given} | prefix
        return
    from tests.azurite import running_azurite

    with running_azurite(folder) as emulator:
        yield {"AzureWebJobsStorage": emulator.connection_string} | prefix


_DOCUMENT_WRITES = ("create", "update", "append_history")
_QUEUE_WRITES = ("claim", "complete", "reschedule", "enqueue", "acquire", "release")


def _counting(store: Store, counts: Counter[str]) -> Store:
    """The store, its write transactions counted: units of work committed, documents and history
    lines written on their own, and the queue's and machine leases' writes."""
    unit_of_work = store.unit_of_work

    def counted_unit() -> Any:
        uow = unit_of_work()
        commit = uow.commit

        def committing() -> Any:
            counts["documents"] += 1
            return commit()

        uow.commit = committing  # type: ignore[method-assign]
        return uow

    def wrap(name: str, kind: str) -> None:
        method = getattr(store, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if name != "claim" or result is not None:  # an empty claim writes nothing
                counts[kind] += 1
            return result

        setattr(store, name, counted)

    store.unit_of_work = counted_unit  # type: ignore[method-assign]
    for name in _DOCUMENT_WRITES:
        wrap(name, "documents")
    for name in _QUEUE_WRITES:
        wrap(name, "queue")
    return store


def _thread_cpu(threads: list[threading.Thread]) -> float:
    total = 0.0
    for thread in threads:
        if thread.ident is not None and thread.is_alive():
            total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return total


def _emulator(http: httpx.Client, url: str, path: str) -> Any:
    response = http.get(f"{url}{path}")
    response.raise_for_status()
    return response.json()


def run(args: argparse.Namespace) -> dict[str, Any]:
    raw = build(args.alerts, args.samples, args.machines, args.time_scale)
    raw["defender"]["live_response"] = {"pending_seconds": args.pending, "command_seconds": args.command}
    raw["joe"] |= {
        "queue_seconds": args.joe_queue,
        "analysis_seconds": args.joe_analysis,
        "quota_daily": max(100, 2 * args.samples),  # an outbreak is not a test of the quota
        "quota_monthly": max(1000, 2 * args.samples),
    }
    for alert in raw["defender"]["alerts"]:
        alert["lastUpdateTime"] = "2026-11-27T08:00:00Z"
    scenario = parse_scenario(raw)
    per_sample = Counter(a % args.samples for a in range(args.alerts))
    bound = outbreak_bound(scenario, [per_sample[s] for s in range(args.samples)])
    with tempfile.TemporaryDirectory() as folder, Emulators(scenario) as emulators, ExitStack() as stack:
        settings = Settings.from_mapping(
            emulators.settings() | {"StatePath": str(Path(folder) / "outbreak.db"), "Workers": str(args.workers)}
        )
        azure = stack.enter_context(azure_account(Path(folder))) if args.store == "azure" else None
        connectors: list[Connector] = []
        writes: Counter[str] = Counter()
        for _ in range(args.instances):
            store = _counting(open_store(args.store, Path(folder), azure), writes)
            stack.callback(store.close)
            connectors.append(
                stack.enter_context(open_connector(settings, clock=Clock(scale=args.time_scale), store=store))
            )
        pools = [WorkerPool(c.app, args.workers) for c in connectors]
        before = set(threading.enumerate())
        for pool in pools:  # running while the alerts come in, as the service's workers do
            pool.start()
        workers = [t for t in threading.enumerate() if t not in before]
        cpu_before = time.thread_time()
        started = emulators.clock.elapsed()
        first = connectors[0]
        if args.intake == "poller":
            now = max(datetime.now(UTC), datetime(2026, 11, 28, tzinfo=UTC))
            first.app.poll(now, now - datetime(2026, 11, 1, tzinfo=UTC))
        else:
            for n, alert in enumerate(scenario.defender.alerts):
                connectors[n % len(connectors)].app.receive(alert["id"], source="bench")
        intake_cpu = time.thread_time() - cpu_before
        for pool in pools:
            pool.notify()
        worker_cpu = 0.0
        while True:
            worker_cpu = max(worker_cpu, _thread_cpu(workers))
            if all(pool.wait_idle_for(0.5) for pool in pools) and first.store.pending() == 0:
                break
        worker_cpu = max(worker_cpu, _thread_cpu(workers))
        for pool in pools:
            pool.stop()
        failed = sum(1 for job in first.ctx.jobs.list() if job.record.state == JobState.FAILED)
        with httpx.Client(verify=emulators.certificates.client_context(), timeout=60) as http:
            calls = _emulator(http, emulators.defender.url, "/_emulator/calls")
            alerts = _emulator(http, emulators.defender.url, "/_emulator/alerts")["value"]
            actions = _emulator(http, emulators.defender.url, "/_emulator/machineactions")["value"]
            submissions = _emulator(http, emulators.joe.url, "/_emulator/submissions")
    ours = [c for a in alerts for c in a.get("comments") or [] if MARKER_PREFIX in str(c.get("comment"))]
    last = max((emulators.clock.elapsed_at(datetime.fromisoformat(c["createdTime"])) for c in ours), default=started)
    api = {route: v for route, v in calls.items() if route not in _AUTH_ROUTES}
    defender_calls = sum(v["calls"] for v in api.values())
    last_comment = last - started
    return {
        "alerts": args.alerts,
        "machines": args.machines,
        "samples": args.samples,
        "instances": args.instances,
        "workers": args.workers,
        "intake": args.intake,
        "time_scale": args.time_scale,
        "comments": len(ours),
        "commented_alerts": sum(
            1 for a in alerts if any(MARKER_PREFIX in str(c.get("comment")) for c in a["comments"])
        ),
        "submissions": len(submissions),
        "collections": sum(1 for a in actions if a.get("type") == "LiveResponse"),
        "defender_calls": defender_calls,
        "defender_calls_per_alert": round(defender_calls / max(1, args.alerts), 3),
        "calls_by_endpoint": {route: v["calls"] for route, v in sorted(api.items())},
        "throttled_429": sum(v["throttled"] for v in api.values()),
        "failed_jobs": failed,
        "last_comment_emulated_s": round(last_comment, 1),
        "bound_emulated_s": round(bound, 1),
        "ratio_to_bound": round(last_comment / bound, 3) if bound else None,
        "connector_cpu_s": round(intake_cpu + worker_cpu, 2),
        "store_write_transactions_per_alert": round(writes["documents"] / max(1, args.alerts), 2),
        "queue_write_transactions_per_alert": round(writes["queue"] / max(1, args.alerts), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--instances", type=int, default=1, help="connector instances sharing the store")
    parser.add_argument("--workers", type=int, default=8, help="workers per instance")
    parser.add_argument(
        "--store",
        choices=["sqlite", "azure"],
        default="sqlite",
        help="azure: the Azure store (Tables and Queues) on Azurite, or on the account AzureWebJobsStorage names; "
        "its instances share the Defender budget through the table (pull mode: each instance claims from the queues)",
    )
    parser.add_argument("--intake", choices=["poller", "ids"], default="poller")
    parser.add_argument("--time-scale", type=float, default=0.1, help="real seconds per emulated second")
    parser.add_argument("--pending", type=float, default=5.0, help="emulated seconds an action is pending")
    parser.add_argument("--command", type=float, default=10.0, help="emulated seconds a command runs")
    parser.add_argument("--joe-queue", type=float, default=30.0, help="emulated seconds in Joe's queue")
    parser.add_argument("--joe-analysis", type=float, default=300.0, help="emulated seconds Joe analyses")
    parser.add_argument("--json", action="store_true", help="print one JSON object on one line")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
