"""`bench.outbreak --store azure`: the outbreak through K Functions app instances, each a process.

Each instance (`bench.instance`) runs the app's queue triggers as the Functions host would, on
one storage account (Azurite unless AzureWebJobsStorage names one) under a prefix of the run's
own; they share the work queues, the table and the Defender budget. This process plays the
platform's part: it runs the timers (one poll takes the outbreak in, the relay and the sweeper
run on their schedules, scaled) and watches the work index to see the run end; with `kill_one` it SIGKILLs
the last instance mid-run, while that one holds work, and times how long its items take to be
taken over (owned by another instance, or finished).

Storage requests are counted where they are made (the instances, and this process's poll and
sweeps; not its own looks at the index), by operation; connector CPU is the instances' CPU
time from the moment they were ready, plus this process's poll and sweeps.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.storage_requests import RequestCounter, install
from joedefender.bootstrap import open_azure_store
from joedefender.hosts.azure import timers
from joedefender.hosts.azure.entry import build_from_environment
from joedefender.hosts.azure.functions import RELAY_PERIOD, SWEEP_PERIOD
from joedefender_emulators.runner import Emulators

_LOOK_EVERY = 0.25  # real seconds between two looks at the work index
_READY_WITHIN = 120.0  # real seconds an instance may take to start


@contextmanager
def azure_account(folder: Path) -> Iterator[dict[str, str]]:
    """The storage account: the one AzureWebJobsStorage names in the environment, else an
    Azurite started for the run; a prefix of the run's own on it."""
    prefix = {"StoragePrefix": f"bench{uuid.uuid4().hex[:10]}"}
    given = os.environ.get("AzureWebJobsStorage")  # noqa: SIM112 - the Functions host's own name
    if given:
        yield {"AzureWebJobsStorage": given} | prefix
        return
    from tests.azurite import running_azurite

    with running_azurite(folder) as emulator:
        yield {"AzureWebJobsStorage": emulator.connection_string} | prefix


@dataclass
class AzureRun:
    """What the instances and the platform's part did."""

    cpu_s: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)
    callers: Counter[str] = field(default_factory=Counter)
    failed_jobs: int = 0
    killed: str | None = None
    killed_items: int = 0
    longest_takeover_s: float | None = None  # emulated seconds
    untaken: list[str] = field(default_factory=list)
    deliveries: int = 0


class _Instance:
    def __init__(self, environ: Mapping[str, str], folder: Path, name: str, scale: float, *, trace: bool) -> None:
        self.name = name
        self.report = folder / f"{name}.json"
        env = {**os.environ, **environ, "BENCH_INSTANCE": name, "BENCH_TIME_SCALE": str(scale)}
        env["BENCH_TRACE"] = "1" if trace else "0"
        env["BENCH_REPORT"] = str(self.report)
        with (folder / f"{name}.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.instance"],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
        self.owner_prefix = ""

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError(f"instance {self.name} did not start (see its log): {line!r}")
        self.owner_prefix = line.split(" ", 1)[1].strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=120)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def read(self) -> dict[str, Any]:
        return dict(json.loads(self.report.read_text())) if self.report.exists() else {}


class _Platform:
    """The driver's own connector: the poll and the sweeper timer, counted and timed."""

    def __init__(self, environ: Mapping[str, str], scale: float, counter: RequestCounter) -> None:
        self.runtime, _ = build_from_environment(environ, time_scale=scale, instance="platform")
        self._scale = scale
        self._counter = counter
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sweeping, name="bench-sweeper", daemon=True)

    def poll(self) -> int:
        started = time.thread_time()
        connector = self.runtime.hosted().connector
        now = max(datetime.now(UTC), datetime(2026, 11, 28, tzinfo=UTC))
        lookback = now - datetime(2026, 11, 1, tzinfo=UTC)
        taken = connector.app.poll(now, lookback)
        self.cpu_s += time.thread_time() - started
        return taken

    def start_sweeper(self) -> None:
        self._thread.start()

    def _sweeping(self) -> None:
        """The relay and the sweeper timers, on their schedules (scaled)."""
        every = round(SWEEP_PERIOD / RELAY_PERIOD)
        for tick in itertools.count(1):
            if self._stop.wait(RELAY_PERIOD * self._scale):
                return
            started = time.thread_time()
            try:
                if tick % every:
                    timers.relay_once(self.runtime)
                else:
                    timers.sweep_once(self.runtime)
            finally:
                self.cpu_s += time.thread_time() - started

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)
        self.runtime.close()


class _Takeover:
    """The items a killed instance held, and when each was first seen taken over."""

    def __init__(self, owner_prefix: str, held: Mapping[str, str], killed_at: float) -> None:
        self._prefix = owner_prefix
        self.waiting = dict(held)  # key -> owner at the kill
        self._killed_at = killed_at
        self.longest = 0.0

    def look(self, owners: Mapping[str, str], now: float) -> None:
        for key in list(self.waiting):
            owner = owners.get(key)
            if owner is None or not owner.startswith(self._prefix):
                del self.waiting[key]
                self.longest = max(self.longest, now - self._killed_at)


def run_azure(emulators: Emulators, values: Mapping[str, str], folder: Path, args: Any, kill_at: float) -> AzureRun:
    """Run the outbreak on K instance processes until the work index is empty.

    `values` are the app settings (the emulators'); `kill_at` the emulated second after which
    the last instance is killed (with `args.kill_one`) once it holds a work item.
    """
    counter = install()
    run = AzureRun()
    with azure_account(folder) as account, ExitStack() as stack:
        environ = dict(values) | account | {"PollerEnabled": "false"}
        names = [f"i{n}" for n in range(args.instances)]
        instances = [_Instance(environ, folder, name, args.time_scale, trace=args.trace) for name in names]
        stack.callback(_kill_all, instances)
        for instance in instances:
            instance.wait_ready()
        with counter.ignored():
            watch = open_azure_store(environ)
        stack.callback(watch.close)
        platform = _Platform(environ, args.time_scale, counter)
        stack.callback(platform.close)
        started = emulators.clock.elapsed()
        platform.poll()
        platform.start_sweeper()
        takeover = _watch(instances, watch, counter, emulators, args, started + kill_at, run)
        platform.close()
        for instance in instances:
            instance.stop()
        for instance in instances:
            report = instance.read()
            run.cpu_s += float(report.get("cpu_s", 0.0))
            run.requests.update(report.get("requests", {}))
            run.callers.update(report.get("callers", {}))
            run.deliveries += int(report.get("delivered", 0))
        run.cpu_s += platform.cpu_s
        run.requests.update(counter.snapshot())
        with counter.ignored():
            run.failed_jobs = _failed_jobs(watch)
        if takeover is not None:
            run.longest_takeover_s = round(takeover.longest / args.time_scale, 1)
            run.untaken = sorted(takeover.waiting)
    return run


def _watch(
    instances: list[_Instance],
    watch: Any,
    counter: RequestCounter,
    emulators: Emulators,
    args: Any,
    kill_at: float,
    run: AzureRun,
) -> _Takeover | None:
    """Look at the work index until it is empty; kill the victim when it is time."""
    victim = instances[-1] if args.kill_one else None
    takeover: _Takeover | None = None
    while True:
        time.sleep(_LOOK_EVERY)
        with counter.ignored():
            items = watch.items()
        now = time.monotonic()
        owners = {item.key: item.owner for item in items}
        if victim is not None and takeover is None and emulators.clock.elapsed() >= kill_at:
            wall = time.time()
            held = {i.key: i.owner for i in items if i.owner.startswith(victim.owner_prefix) and i.due_at > wall}
            if held:
                victim.kill()
                run.killed = victim.name
                run.killed_items = len(held)
                takeover = _Takeover(victim.owner_prefix, held, now)
                continue
        if takeover is not None:
            takeover.look(owners, now)
        if not items:
            return takeover


def _kill_all(instances: list[_Instance]) -> None:
    """Whatever is still running when the bench leaves (an error, ^C)."""
    for instance in instances:
        if instance.process.poll() is None:
            instance.process.kill()


def _failed_jobs(store: Any) -> int:
    from joedefender.domain.jobs import JobState, SampleJob

    return sum(1 for doc in store.list("job") if SampleJob.model_validate(doc.data).state == JobState.FAILED)
