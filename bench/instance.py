"""One Functions app instance for `bench.outbreak --store azure`, in a process of its own.

The app as the host runs it (`hosts.azure`: the queue triggers advance one work item per
message), driven by the test harness's stand-in for the host's queue listener (host.json's
batch sizes and polling, the message hidden for the host's 10 minutes, scaled, while it runs).
Every storage request the process makes is counted (`bench.storage_requests`), the Functions
host's own queue reads and deletes included. Every half second, and when it stops, the instance
writes what it did to its report file (CPU seconds since it was ready, requests by operation),
so a report survives a SIGKILL less the last half second.

    BENCH_INSTANCE=<name> BENCH_TIME_SCALE=<scale> BENCH_REPORT=<file> python -m bench.instance

The app settings come from the environment, as on Azure. It says "ready" once the connector is
open and the listeners run, and stops cleanly when its stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.storage_requests import install

HOST_VISIBILITY = 600.0  # nominal seconds a delivered message stays hidden on Azure (the host's 10 minutes)
REPORT_EVERY = 0.5  # real seconds


def _write(path: Path, report: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(report))
    os.replace(partial, path)


def main() -> None:
    counter = install(trace=os.environ.get("BENCH_TRACE") == "1")
    from tests.azure.harness import Instance, QueueHost

    from joedefender.hosts.azure.entry import build_from_environment

    name = os.environ["BENCH_INSTANCE"]
    scale = float(os.environ["BENCH_TIME_SCALE"])
    report_path = Path(os.environ["BENCH_REPORT"])
    runtime, app = build_from_environment(os.environ, time_scale=scale, instance=name)
    runtime.hosted()  # the connector opens now, not at the first message
    host = QueueHost.from_host_json(scale=scale, in_flight=HOST_VISIBILITY * scale)
    started = time.process_time()
    connection = os.environ["AzureWebJobsStorage"]  # noqa: SIM112 - the Functions host's own name
    instance = Instance(app, connection, host, name=name).start()
    stopping = threading.Event()

    def report() -> dict[str, Any]:
        counts = instance.counts
        return {
            "name": name,
            "pid": os.getpid(),
            "owner_prefix": runtime.instance,
            "cpu_s": time.process_time() - started,
            "requests": counter.snapshot(),
            "callers": counter.callers(),
            "delivered": counts.delivered,
            "failed": counts.failed,
            "poisoned": counts.poisoned,
        }

    def keep_reporting() -> None:
        while not stopping.wait(REPORT_EVERY):
            _write(report_path, report())

    threading.Thread(target=keep_reporting, name="bench-report", daemon=True).start()
    print(f"ready {runtime.instance}", flush=True)
    sys.stdin.read()  # until the bench closes it, or kills this process
    instance.stop()
    stopping.set()
    _write(report_path, report())
    runtime.close()


if __name__ == "__main__":
    main()
