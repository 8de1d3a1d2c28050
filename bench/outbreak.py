"""An outbreak at the speed the tenant's limits allow: how close the connector comes to the bound.

Builds a tenant of M machines, S distinct files and N alerts (alert a is on machine a mod M and
carries file a mod S; every machine carries every file), runs K connector instances against the
emulators with the documented rate limits ON and a scaled clock, and prints what it cost and how
long it took on the emulated clock, next to the bound the documented limits and the scenario's
service times allow (`bench.bound`).

- `--store sqlite` (the standalone service): K instances in this process, each its own engine,
  clients, limiter and worker pool, on one SQLite file. The alerts arrive by one poll
  (`--intake poller`, with their evidence) or as bare ids, as a webhook or the CLI delivers them
  (`--intake ids`).
- `--store azure` (the Functions app): K instances, each a process running the app's queue
  triggers under a stand-in for the Functions host (`bench.outbreak_azure`), on Azurite (or the
  account AzureWebJobsStorage names); they share the queues, the table and the Defender budget.
  The alerts arrive by one poll; the sweeper timer runs on its schedule. `--kill-one` SIGKILLs
  the last instance mid-run and reports `longest_takeover_s` (emulated seconds until each work
  item it held was owned by another instance or finished). `storage_requests_per_alert` counts
  every Tables and Queues request that was answered, by operation (`bench.storage_requests`).

`--quarantined` makes every alert an AV alert whose file sits only in its machine's quarantine
(`live_response_actions_per_file`; the bound then counts BOUND_ACTIONS_QUARANTINED actions a file).

    .venv/bin/python -m bench.outbreak --alerts 1000 --machines 200 --samples 20 --json
    .venv/bin/python -m bench.outbreak --store azure --instances 3 --json

`connector_cpu_s` (and `cpu_ms_per_alert`) is the connector's CPU time: on SQLite, its threads'
(the workers and the intake; the emulators run in this process on threads of their own); on
Azure, the instance processes' from when they were ready, plus the poll and the sweeps.
`peak_rss_mb` is this process's, emulators included.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.bound import outbreak_bound
from bench.common import command_line, report
from bench.outbreak_azure import run_azure
from bench.pipeline_throughput import build
from bench.storage_requests import per_alert
from joedefender.adapters.sqlite import SqliteStore
from joedefender.bootstrap import Connector, open_connector
from joedefender.domain.comments import MARKER_PREFIX
from joedefender.domain.jobs import JobState
from joedefender.hosts.standalone.workers import WorkerPool
from joedefender.pipeline.clock import Clock
from joedefender.pipeline.ports import Store
from joedefender.settings import Settings
from joedefender_emulators.runner import Emulators
from joedefender_emulators.scenario import parse_scenario

BOUND_ACTIONS_QUARANTINED = 2  # live response actions a quarantined file needs at the least (issue 22)
_AUTH_ROUTES = ("token", "openid-configuration")  # the sign-in, not Defender's API


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


def scenario_of(args: argparse.Namespace) -> dict[str, Any]:
    """The outbreak's scenario: `build`'s tenant with the bench's service times; with
    `--quarantined`, every alert an AV alert whose file sits only in its machine's quarantine."""
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
    if args.quarantined:
        quarantine_everything(raw)
    return raw


def quarantine_everything(raw: dict[str, Any]) -> None:
    """Every machine's files moved into its quarantine, every alert made Defender AV's
    "prevented" alert about its file."""
    for machine in raw["defender"]["machines"]:
        machine["quarantine"] = [
            {"threat_name": "Trojan:Win32/Bench", "original_path": f["path"], "sample": f["sample"]}
            for f in machine.pop("files")
        ]
    for alert in raw["defender"]["alerts"]:
        alert["detectionSource"] = "WindowsDefenderAv"
        for evidence in alert["evidence"]:
            evidence["detectionStatus"] = "Prevented"


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.kill_one and (args.store != "azure" or args.instances < 2):
        raise SystemExit("--kill-one needs --store azure and --instances 2 or more")
    if args.store == "azure" and args.intake != "poller":
        raise SystemExit("--store azure takes the alerts in by one poll (--intake poller)")
    scenario = parse_scenario(scenario_of(args))
    per_sample = Counter(a % args.samples for a in range(args.alerts))
    actions = BOUND_ACTIONS_QUARANTINED if args.quarantined else 1
    bound = outbreak_bound(scenario, [per_sample[s] for s in range(args.samples)], actions_per_sample=actions)
    with tempfile.TemporaryDirectory() as folder, Emulators(scenario) as emulators:
        started = emulators.clock.elapsed()
        values = emulators.settings() | {"StatePath": str(Path(folder) / "outbreak.db"), "Workers": str(args.workers)}
        if args.store == "azure":
            azure = run_azure(emulators, values, Path(folder), args, kill_at=args.kill_at * bound)
            cost = {
                "failed_jobs": azure.failed_jobs,
                "connector_cpu_s": round(azure.cpu_s, 2),
                "storage_requests_per_alert": per_alert(dict(azure.requests), args.alerts),
                "storage_requests": sum(azure.requests.values()),
                "queue_deliveries": azure.deliveries,
            }
            if args.trace:
                shown = {k: round(n / args.alerts, 2) for k, n in azure.callers.most_common() if n >= args.alerts / 20}
                cost["storage_requests_per_alert_by_caller"] = shown
            if args.kill_one:
                cost |= {
                    "killed": azure.killed,
                    "killed_items": azure.killed_items,
                    "longest_takeover_s": azure.longest_takeover_s,
                    "untaken_items": azure.untaken,
                }
        else:
            cost = run_sqlite(emulators, values, args)
        world = _world(emulators)
    return _result(args, world, cost, started, bound)


def run_sqlite(emulators: Emulators, values: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """K connector instances in this process, each its own engine, clients and limiter, on one
    SQLite file, each with a worker pool claiming from it (the standalone service)."""
    settings = Settings.from_mapping(values)
    folder = Path(values["StatePath"]).parent
    with ExitStack() as stack:
        connectors: list[Connector] = []
        writes: Counter[str] = Counter()
        for _ in range(args.instances):
            store = _counting(SqliteStore(folder / "outbreak.db"), writes)
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
        first = connectors[0]
        if args.intake == "poller":
            now = max(datetime.now(UTC), datetime(2026, 11, 28, tzinfo=UTC))
            first.app.poll(now, now - datetime(2026, 11, 1, tzinfo=UTC))
        else:
            for n, alert in enumerate(emulators.scenario.defender.alerts):
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
    return {
        "failed_jobs": failed,
        "connector_cpu_s": round(intake_cpu + worker_cpu, 2),
        "store_write_transactions_per_alert": round(writes["documents"] / max(1, args.alerts), 2),
        "queue_write_transactions_per_alert": round(writes["queue"] / max(1, args.alerts), 2),
    }


def _world(emulators: Emulators) -> dict[str, Any]:
    """What the emulators saw: Defender's calls, alerts and actions, Joe's submissions."""
    with httpx.Client(verify=emulators.certificates.client_context(), timeout=60) as http:
        return {
            "calls": _emulator(http, emulators.defender.url, "/_emulator/calls"),
            "alerts": _emulator(http, emulators.defender.url, "/_emulator/alerts")["value"],
            "actions": _emulator(http, emulators.defender.url, "/_emulator/machineactions")["value"],
            "submissions": _emulator(http, emulators.joe.url, "/_emulator/submissions"),
            "clock": emulators.clock,
        }


def _result(
    args: argparse.Namespace, world: dict[str, Any], cost: dict[str, Any], started: float, bound: float
) -> dict[str, Any]:
    clock = world["clock"]
    alerts = world["alerts"]
    ours = [c for a in alerts for c in a.get("comments") or [] if MARKER_PREFIX in str(c.get("comment"))]
    last = max((clock.elapsed_at(datetime.fromisoformat(c["createdTime"])) for c in ours), default=started)
    api = {route: v for route, v in world["calls"].items() if route not in _AUTH_ROUTES}
    defender_calls = sum(v["calls"] for v in api.values())
    last_comment = last - started
    collections = sum(1 for a in world["actions"] if a.get("type") == "LiveResponse")
    commented = [sum(MARKER_PREFIX in str(c.get("comment")) for c in a["comments"]) for a in alerts]
    cpu = float(cost["connector_cpu_s"])
    phases = {
        "live_response_starts": _span(clock, [a.get("creationDateTimeUtc") for a in world["actions"]], started),
        "submissions": _span(clock, [s.get("time") for s in world["submissions"]], started),
        "comments": _span(clock, [c.get("createdTime") for c in ours], started),
    }
    return {
        "alerts": args.alerts,
        "machines": args.machines,
        "samples": args.samples,
        "store": args.store,
        "instances": args.instances,
        "workers": args.workers if args.store == "sqlite" else None,
        "quarantined": args.quarantined,
        "time_scale": args.time_scale,
        "comments": len(ours),
        "commented_alerts": sum(1 for n in commented if n),
        "alerts_commented_twice": sum(1 for n in commented if n > 1),
        "submissions": len(world["submissions"]),
        "collections": collections,
        "live_response_actions_per_file": round(collections / max(1, args.samples), 2),
        "defender_calls": defender_calls,
        "defender_calls_per_alert": round(defender_calls / max(1, args.alerts), 3),
        "calls_by_endpoint": {route: v["calls"] for route, v in sorted(api.items())},
        "throttled_429": sum(v["throttled"] for v in api.values()),
        "last_comment_emulated_s": round(last_comment, 1),
        "phases_emulated_s": phases,
        "bound_emulated_s": round(bound, 1),
        "ratio_to_bound": round(last_comment / bound, 3) if bound else None,
        "cpu_ms_per_alert": round(1000 * cpu / max(1, args.alerts), 1),
        **cost,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _span(clock: Any, moments: list[Any], started: float) -> list[float] | None:
    """First, median and last of `moments` (ISO times the emulators showed), in emulated seconds
    from the start: where an outbreak's time went."""
    at = sorted(clock.elapsed_at(datetime.fromisoformat(str(m))) - started for m in moments if m)
    return [round(at[0], 1), round(at[len(at) // 2], 1), round(at[-1], 1)] if at else None


def main() -> None:
    parser = command_line(__doc__)
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
    parser.add_argument(
        "--kill-one",
        action="store_true",
        help="azure: SIGKILL the last instance mid-run, while it holds work, and time the takeover of its items",
    )
    parser.add_argument(
        "--kill-at", type=float, default=0.3, help="with --kill-one: not before this fraction of the bound"
    )
    parser.add_argument(
        "--quarantined",
        action="store_true",
        help="every alert an AV alert whose file sits only in its machine's quarantine",
    )
    parser.add_argument(
        "--trace", action="store_true", help="azure: also count the instances' storage requests by caller"
    )
    args = parser.parse_args()
    report(run(args), args)


if __name__ == "__main__":
    main()
