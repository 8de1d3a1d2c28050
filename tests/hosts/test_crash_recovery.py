"""Crash recovery: the worker process killed with SIGKILL at random points, many times, then restarted.

However often a step dies half-way (between a live response and recording it, between submitting
and saving the submission, between the comment's PATCH and saving the link), the restarted
connector must end with every alert enriched exactly once: one comment per alert, one submission
per sample, and nothing left on the endpoints.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from joedefender.domain.comments import MARKER_PREFIX
from joedefender.domain.jobs import AlertState, JobState
from joedefender.endpoint.contract import WORK_ROOT
from joedefender.settings import SETTING_NAMES
from tests.pipeline.builders import alert, file_evidence, machine, machine_id, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]

_TIME_SCALE = 0.002
_KILLS = 20
_RUNS_PER_WAVE = 3
_KILL_DEADLINE = 60.0  # real seconds for the kill phase
_FINAL_RUN_TIMEOUT = 60.0
_SEED = int(os.environ.get('CRASH_SEED', '20261127'))

_INVOICE = "C:\\Users\\alice\\Downloads\\invoice.exe"
_TOOL = "D:\\tools\\helper.exe"
_LOADER_DIR = "C:\\Users\\alice\\AppData\\Local\\Temp"
_URL = "http://phish.example/login"


def _scenario_world(make_world: WorldFactory) -> tuple[World, dict[str, str]]:
    """8 alerts over 4 samples on 3 machines: a file on two machines, a quarantined file, a file on
    a third machine, a URL. Returns the world and each alert's expected verdict headline."""
    quarantine = [{"threat_name": "Trojan:Win32/Loader.A", "original_path": f"{_LOADER_DIR}\\ldr.dll", "sample": "loader"}]
    machines = [
        machine(1, files={_INVOICE: "invoice"}, quarantine=quarantine),
        machine(2, files={_INVOICE: "invoice"}),
        machine(3, files={_TOOL: "tool"}),
    ]
    alerts = [
        alert(1, 1, file_evidence("invoice", _INVOICE)),
        alert(2, 2, file_evidence("invoice", _INVOICE)),
        alert(3, 1, file_evidence("invoice", _INVOICE)),
        alert(
            4,
            1,
            file_evidence("loader", f"{_LOADER_DIR}\\ldr.dll", status="Prevented"),
            source="WindowsDefenderAv",
            threat="Trojan:Win32/Loader.A",
        ),
        alert(5, 3, file_evidence("tool", _TOOL)),
        alert(6, 3, file_evidence("tool", _TOOL)),
        alert(7, 2, {"entityType": "Url", "url": _URL}),
        alert(8, 1, {"entityType": "Url", "url": _URL}),
    ]
    verdicts = [
        {"sample": "invoice", "detection": "malicious", "score": 91},
        {"sample": "loader", "detection": "malicious", "score": 100},
        {"sample": "tool", "detection": "suspicious", "score": 55},
        {"url": _URL, "detection": "malicious", "score": 80},
    ]
    raw = world(
        samples={"invoice": "invoice bytes", "loader": "loader bytes", "tool": "tool bytes"},
        machines=machines,
        alerts=alerts,
        verdicts=verdicts,
        time_scale=_TIME_SCALE,
    )
    # Slow answers to the calls with side effects widen the windows where a kill leaves an effect
    # done but not recorded (the emulator carries the request out after the delay, client or not).
    raw["faults"] = [
        {"service": "defender", "method": "POST", "path": "runliveresponse$", "delay": 0.15},
        {"service": "defender", "method": "PATCH", "path": "^/api/alerts/", "delay": 0.1},
        {"service": "joe", "method": "POST", "path": "submission/new", "delay": 0.15},
    ]
    headline = {
        "invoice": "MALICIOUS (score 91/100)",
        "loader": "MALICIOUS (score 100/100)",
        "tool": "SUSPICIOUS (score 55/100)",
    }
    expected = {
        a["id"]: headline[a["evidence"][0]["$sample"]] if "$sample" in a["evidence"][0] else "MALICIOUS (score 80/100)"
        for a in alerts
    }
    return make_world(scenario(raw)), expected


def _environment(w: World) -> dict[str, str]:
    """The test's environment without any joedefender setting of its own, plus the world's."""
    names = {name.lower() for name in SETTING_NAMES}
    inherited = {k: v for k, v in os.environ.items() if k.lower() not in names}
    return inherited | {k: str(v) for k, v in w.values.items()}


def _command(w: World) -> list[str]:
    scale = str(w.scenario.time_scale)
    return [sys.executable, "-m", "joedefender", "run", "--until-idle", "--no-poll", "--no-webhook", "--time-scale", scale]


def _start(w: World, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(_command(w), env=_environment(w), stdout=out, stderr=subprocess.STDOUT)


def _take_in(w: World, alert_ids: list[str]) -> None:
    """Alerts arriving between runs, as the webhook or the poller would record them."""
    with w.connector() as connector:
        for alert_id in alert_ids:
            assert connector.engine.intake.receive(alert_id, source="test").created


def _kill_repeatedly(w: World, waves: list[list[str]], logs: Path, rng: random.Random) -> int:
    """Start the worker process and SIGKILL it after a random time, again and again, taking in a
    new wave of alerts every few runs so there is always work under way. Returns the kill count."""
    kills = runs = 0
    waiting = list(waves)
    deadline = time.monotonic() + _KILL_DEADLINE
    while time.monotonic() < deadline and (kills < _KILLS or waiting):
        if waiting and runs % _RUNS_PER_WAVE == 0:
            _take_in(w, waiting.pop(0))
        log = logs / f"run-{runs:02d}.log"
        process = _start(w, log)
        runs += 1
        try:
            process.wait(timeout=rng.uniform(0.25, 1.5))
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
            continue
        assert process.returncode == 0, log.read_text()
        if not waiting:
            break  # everything was taken in and done
        runs = -(-runs // _RUNS_PER_WAVE) * _RUNS_PER_WAVE  # idle: the next wave now
    return kills


def _ours(comments: list[str]) -> list[str]:
    return [c for c in comments if MARKER_PREFIX in c]


@pytest.mark.slow
def test_sigkill_at_random_points_then_a_restart_enriches_every_alert_once(
    make_world: WorldFactory, tmp_path: Path
) -> None:
    w, expected = _scenario_world(make_world)
    ids = list(expected)
    # The first wave starts every kind of sample; later alerts join jobs under way or finished.
    waves = [[ids[0], ids[3], ids[6]], [ids[4]], [ids[1]], [ids[5], ids[7]], [ids[2]]]

    kills = _kill_repeatedly(w, waves, tmp_path, random.Random(_SEED))
    final = tmp_path / "final.log"
    with final.open("ab") as out:
        done = subprocess.run(
            _command(w), env=_environment(w), stdout=out, stderr=subprocess.STDOUT, timeout=_FINAL_RUN_TIMEOUT
        )
    assert done.returncode == 0, final.read_text()

    # Every alert: exactly one comment of ours, carrying the verdict (not a failure).
    for alert_id, headline in expected.items():
        ours = _ours(w.comments(alert_id))
        assert len(ours) == 1, (alert_id, ours)
        assert ours[0].startswith(f"Joe Sandbox: {headline}"), (alert_id, ours[0])

    # One submission per sample, whatever the kills interrupted.
    submissions = w.submissions()
    carrying = [s for s in submissions if s["sha256"] or s["url"]]
    submitted = Counter(s["sha256"] or s["url"] for s in carrying)
    assert len(submitted) == 4, submissions
    assert set(submitted.values()) == {1}, submissions
    # A kill between jbxapi's chunked `submission/new` and its chunk leaves a submission that
    # never got a sample (no analysis, no hash); that is all any other submission may be.
    for orphan in (s for s in submissions if s not in carrying):
        assert (orphan["chunked"], orphan["status"], orphan["received"], orphan["webids"]) == (
            True,
            "uploading",
            0,
            [],
        ), orphan

    # Nothing left on the endpoints: every quarantine folder was cleaned up.
    for n in (1, 2, 3):
        files = w.defender(f"/_emulator/machines/{machine_id(n)}/files")["files"]
        leftovers = [f["path"] for f in files if str(f["path"]).lower().startswith(WORK_ROOT.lower())]
        assert leftovers == [], (machine_id(n), leftovers)

    # The store agrees: every alert accepted, every job done, nothing queued.
    with w.connector() as connector:
        assert {a.record.alert_id: a.record.state for a in connector.ctx.alerts.list()} == dict.fromkeys(
            expected, AlertState.ACCEPTED
        )
        assert {j.record.state for j in connector.ctx.jobs.list()} == {JobState.DONE}
        assert connector.store.pending() == 0
    assert kills >= _KILLS * 3 // 4, f"only {kills} kills: the test did not crash the connector enough"
