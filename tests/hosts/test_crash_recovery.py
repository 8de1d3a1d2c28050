"""Crash recovery: the worker process killed with SIGKILL at random points, many times, then restarted.

However often a step dies half-way (between a live response and recording it, between submitting
and saving the submission, between the comment's PATCH or batchUpdate and saving the links), and however
often such a call is carried out but its answer lost (a 5xx or a dropped connection after the change
was made, at random on the live response, the Joe submission, the comment's PATCH and batchUpdate), the restarted
connector must end with every alert enriched exactly once: one comment per alert, one submission
per sample, and nothing left on the endpoints. With Graph as the alert source and verdicts on
incidents, the same holds for Graph's comment POSTs, and each incident ends with one comment per
sample and its worst verdict's tag beside the analysts' tags. Random kills rarely land between two writes that
are microseconds apart, so the last tests crash the connector at such precise points on purpose.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from joedefender.bootstrap import Connector
from joedefender.domain.comments import MARKER_PREFIX
from joedefender.domain.jobs import AlertState, JobState
from joedefender.endpoint.contract import WORK_ROOT
from joedefender.pipeline.ports import UnitOfWork
from tests.hosts import environment, joedefender
from tests.pipeline.builders import alert, file_evidence, machine, machine_id, process_evidence, world
from tests.world import World, drain, scenario

WorldFactory = Callable[..., World]

_TIME_SCALE = 0.002
_KILLS = 20
_MIN_KILLS = 12
_KILLS_PER_WAVE = 3
_KILL_AFTER = (0.2, 1.2)  # real seconds after the start; the process takes about 0.35 s to start
_KILL_DEADLINE = 60.0  # real seconds for the whole kill phase
_FINAL_RUN_TIMEOUT = 60.0
# How often a call with side effects is carried out but its answer lost (a 5xx or a drop).
_LOST_ANSWERS = 0.25
# Fixed for reproducible runs; set JOEDEFENDER_CRASH_SEED to explore other kill schedules.
_SEED = int(os.environ.get("JOEDEFENDER_CRASH_SEED", "20261127"))

_INVOICE = "C:\\Users\\alice\\Downloads\\invoice.exe"
_TOOL = "D:\\tools\\helper.exe"
_LOADER = "C:\\Users\\alice\\AppData\\Local\\Temp\\ldr.dll"
_LOADER_THREAT = "Trojan:Win32/Loader.A"
_URL = "http://phish.example/login"
_RUNDLL32 = "C:\\Windows\\SysWOW64\\rundll32.exe"
_DLL = "C:\\ProgramData\\Vendor\\upd.dll"


def _ours(comments: list[str]) -> list[str]:
    return [c for c in comments if MARKER_PREFIX in c]


def _leftovers(w: World, n: int) -> list[str]:
    """What the connector left under its work folder on machine `n`."""
    files = w.defender(f"/_emulator/machines/{machine_id(n)}/files")["files"]
    return [str(f["path"]) for f in files if str(f["path"]).lower().startswith(WORK_ROOT.lower())]


def _quarantined_loader_alert(n: int, on_machine: int) -> dict[str, Any]:
    return alert(
        n,
        on_machine,
        file_evidence("loader", _LOADER, status="Prevented"),
        source="WindowsDefenderAv",
        threat=_LOADER_THREAT,
    )


def _loader_quarantine() -> list[dict[str, str]]:
    return [{"threat_name": _LOADER_THREAT, "original_path": _LOADER, "sample": "loader"}]


# -- SIGKILL at random points -------------------------------------------------------------------


# With Graph as the alert source and verdicts on incidents: the alerts' incidents, each with the
# tags analysts gave it before the run, and the tag of ours it must end with (its worst verdict).
_INCIDENTS = {
    "601": ((1, 4, 5), ["VIP"], "JoeSandbox:malicious"),  # invoice, loader, tool
    "602": ((2, 7), ["Finance", "Escalated"], "JoeSandbox:malicious"),  # invoice, the URL
    "603": ((6,), [], "JoeSandbox:suspicious"),  # the tool
    "604": ((3, 8, 9), [], "JoeSandbox:malicious"),  # invoice, the URL, the DLL
}
_GRAPH = {"AlertSource": "graph", "DefenderIncidentTags": "true", "DefenderIncidentComments": "true"}
# The calls with side effects whose answers are slow or lost: live response and Joe's submission,
# and the comment writes of the alert source (and, with Graph, the incident's writes).
_SIDE_EFFECTS = [("defender", "POST", "runliveresponse$"), ("joe", "POST", "submission/(new|chunked-sample)")]
_MDE_COMMENTS = [("defender", "PATCH", "^/api/alerts/"), ("defender", "POST", "^/api/alerts/batchUpdate$")]
_GRAPH_WRITES = [
    ("graph", "POST", r"^/v1\.0/security/alerts_v2/.+/comments$"),
    ("graph", "POST", r"^/v1\.0/security/incidents/.+/comments$"),
    ("graph", "PATCH", r"^/v1\.0/security/incidents/[^/]+$"),
]


def _busy_world(make_world: WorldFactory, *, graph: bool = False) -> tuple[World, dict[str, str]]:
    """9 alerts over 5 samples on 3 machines: a file on two machines, a quarantined file, a file on
    a third machine, a URL, a DLL rundll32.exe ran (collected by its path, then the sample of its
    hash). Returns the world and each alert's expected verdict headline. With
    `graph`, the alerts are read and commented through Graph and belong to `_INCIDENTS`, whose
    verdicts are written too."""
    machines = [
        machine(1, files={_INVOICE: "invoice"}, quarantine=_loader_quarantine()),
        machine(2, files={_INVOICE: "invoice", _DLL: "dll", _RUNDLL32: "rundll32"}),
        machine(3, files={_TOOL: "tool"}),
    ]
    invoice, loader, tool = "MALICIOUS (score 91/100)", "MALICIOUS (score 100/100)", "SUSPICIOUS (score 55/100)"
    url, dll = "MALICIOUS (score 80/100)", "MALICIOUS (score 93/100)"
    alerts = [
        (alert(1, 1, file_evidence("invoice", _INVOICE)), invoice),
        (alert(2, 2, file_evidence("invoice", _INVOICE)), invoice),
        (alert(3, 1, file_evidence("invoice", _INVOICE)), invoice),
        (_quarantined_loader_alert(4, 1), loader),
        (alert(5, 3, file_evidence("tool", _TOOL)), tool),
        (alert(6, 3, file_evidence("tool", _TOOL)), tool),
        (alert(7, 2, {"entityType": "Url", "url": _URL}), url),
        (alert(8, 1, {"entityType": "Url", "url": _URL}), url),
        (alert(9, 2, process_evidence(_RUNDLL32, f"rundll32.exe {_DLL},Go", sample="rundll32")), dll),
    ]
    incident_of = {n: int(incident) for incident, (members, _, _) in _INCIDENTS.items() for n in members}
    raw = world(
        samples={
            "invoice": "invoice bytes",
            "loader": "loader bytes",
            "tool": "tool bytes",
            "dll": "dll bytes",
            "rundll32": "rundll32 bytes",
        },
        machines=machines,
        alerts=[a | {"incidentId": incident_of[n]} if graph else a for n, (a, _) in enumerate(alerts, start=1)],
        verdicts=[
            {"sample": "invoice", "detection": "malicious", "score": 91},
            {"sample": "loader", "detection": "malicious", "score": 100},
            {"sample": "tool", "detection": "suspicious", "score": 55},
            {"url": _URL, "detection": "malicious", "score": 80},
            {"sample": "dll", "detection": "malicious", "score": 93},
        ],
        time_scale=_TIME_SCALE,
    )
    raw["joe"] |= {"queue_seconds": 30, "analysis_seconds": 900}  # under a job's 30-minute limit
    raw["seed"] = _SEED  # which of the calls below the random `after` faults hit
    if graph:
        raw["graph"] = {"incidents": [{"id": i, "customTags": tags} for i, (_, tags, _) in _INCIDENTS.items()]}
    # Slow answers to the calls with side effects widen the windows where a kill leaves an effect
    # done but not recorded (the emulator carries a request out after the delay, client or not).
    # Some of them are carried out and then answered with a 5xx or a dropped connection: the
    # change was made, the connector cannot know (the first matching rule fires, so these come first).
    slow = _SIDE_EFFECTS + (_GRAPH_WRITES if graph else _MDE_COMMENTS)
    answers: list[dict[str, Any]] = [{"status": 500}, {"status": 503}, {"drop": True}]
    rng = random.Random(_SEED)
    # The first call to each is always one of them, so every run meets all three; then at random.
    lost = [{"service": s, "method": m, "path": p, "delay": 0.3, "after": True} for s, m, p in slow]
    raw["faults"] = (
        [rule | {"times": 1} | rng.choice(answers) for rule in lost]
        + [rule | {"rate": _LOST_ANSWERS} | rng.choice(answers) for rule in lost]
        + [{"service": s, "method": m, "path": p, "delay": 0.3} for s, m, p in slow]
    )
    return make_world(scenario(raw), **(_GRAPH if graph else {})), {a["id"]: headline for a, headline in alerts}


def _command(w: World) -> list[str]:
    return joedefender("run", "--until-idle", "--no-poll", "--no-webhook", "--time-scale", str(w.scenario.time_scale))


def _take_in(w: World, alert_ids: list[str]) -> None:
    """Alerts arriving between runs, as the webhook or the poller would record them."""
    with w.connector() as connector:
        for alert_id in alert_ids:
            assert connector.app.receive(alert_id, source="test").created


def _kill_repeatedly(w: World, waves: list[list[str]], logs: Path, rng: random.Random) -> int:
    """Start the worker process and SIGKILL it after a random time, again and again, taking in a
    new wave of alerts every few kills (or as soon as a run found nothing left to do), so there is
    always work under way. Returns the kill count."""
    kills = runs = next_wave = 0
    waiting = list(waves)
    deadline = time.monotonic() + _KILL_DEADLINE
    while time.monotonic() < deadline and (kills < _KILLS or waiting):
        if waiting and kills >= next_wave:
            _take_in(w, waiting.pop(0))
            next_wave = kills + _KILLS_PER_WAVE
        log = logs / f"run-{runs:02d}.log"
        runs += 1
        with log.open("wb") as out:
            process = subprocess.Popen(_command(w), env=environment(w.values), stdout=out, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=rng.uniform(*_KILL_AFTER))
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
            continue
        assert process.returncode == 0, log.read_text()
        if not waiting:
            break  # everything was taken in and is done
        next_wave = kills  # nothing left to do: the next wave now
    for wave in waiting:  # the deadline came first (a slow machine): the final run takes these
        _take_in(w, wave)
    return kills


def _crash_then_finish(w: World, ids: list[str], logs: Path) -> int:
    """Kill the worker process again and again while the alerts come in, then one final run to
    the end; the kill count."""
    # New samples keep arriving, and later alerts join jobs under way or finished.
    waves = [[ids[0], ids[6]], [ids[3]], [ids[8]], [ids[4]], [ids[1]], [ids[7]], [ids[5]], [ids[2]]]
    kills = _kill_repeatedly(w, waves, logs, random.Random(_SEED))
    final = logs / "final.log"
    with final.open("wb") as out:
        done = subprocess.run(
            _command(w),
            env=environment(w.values),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=_FINAL_RUN_TIMEOUT,
            check=False,
        )
    assert done.returncode == 0, final.read_text()
    return kills


def _check_samples_endpoints_and_store(w: World, expected: dict[str, str]) -> None:
    # One submission per sample, whatever the kills interrupted.
    submissions = w.submissions()
    carrying = [s for s in submissions if s["sha256"] or s["url"]]
    assert Counter(s["sha256"] or s["url"] for s in carrying) == Counter(
        [w.scenario.samples[name].sha256 for name in ("invoice", "loader", "tool", "dll")] + [_URL]
    ), submissions
    # A kill between jbxapi's chunked `submission/new` and its one chunk leaves a submission that
    # never got its sample (no hash, no analysis): that, and only that, may be there besides.
    for orphan in (s for s in submissions if s not in carrying):
        assert (orphan["chunked"], orphan["status"], orphan["received"], orphan["webids"]) == (
            True,
            "uploading",
            0,
            [],
        ), orphan
    # Nothing left on the endpoints: every quarantine folder was cleaned up.
    for n in (1, 2, 3):
        assert _leftovers(w, n) == [], machine_id(n)
    # The store agrees: every alert accepted, every job done, nothing queued.
    with w.connector() as connector:
        states = {a.record.alert_id: a.record.state for a in connector.ctx.alerts.list()}
        assert states == dict.fromkeys(expected, AlertState.ACCEPTED)
        # Every job done; the DLL's path job handed its alert to the job of its hash.
        jobs = {j.record.key: j.record.state for j in connector.ctx.jobs.list()}
        assert {state for key, state in jobs.items() if not key.startswith("path:")} == {JobState.DONE}
        assert [state for key, state in jobs.items() if key.startswith("path:")] == [JobState.RESOLVED]
        assert connector.store.pending() == 0


def _spent(w: World, *services: str) -> set[str]:
    """The fault rules that fired exactly once and are used up: the always-first lost answers."""
    faults = [rule for service in services for rule in getattr(w, service)("/_emulator/faults")]
    return {f["path"] for f in faults if f["left"] == 0 and f["fired"] == 1}


def test_sigkill_at_random_points_then_a_restart_enriches_every_alert_once(
    make_world: WorldFactory, tmp_path: Path
) -> None:
    w, expected = _busy_world(make_world)
    kills = _crash_then_finish(w, list(expected), tmp_path)

    # Every alert: exactly one comment of ours, and it carries the verdict (not a failure).
    for alert_id, headline in expected.items():
        ours = _ours(w.comments(alert_id))
        assert len(ours) == 1, (alert_id, ours)
        assert ours[0].startswith(f"Joe Sandbox: {headline}"), (alert_id, ours[0])
    _check_samples_endpoints_and_store(w, expected)
    # Each call with side effects had its answer lost after it was carried out, at least once.
    spent = _spent(w, "defender", "joe")
    assert {"runliveresponse$", "submission/(new|chunked-sample)"} <= spent
    # A comment goes by PATCH to a lone alert and by batchUpdate to several: one of them at least.
    assert spent & {"^/api/alerts/", "^/api/alerts/batchUpdate$"}
    assert kills >= _MIN_KILLS, f"only {kills} kills: the test did not crash the connector enough"


def test_sigkill_with_graph_as_the_source_and_verdicts_on_incidents_writes_each_once(
    make_world: WorldFactory, tmp_path: Path
) -> None:
    """The same with Graph: alerts read and commented through alerts_v2, the incidents tagged and
    commented, Graph's comment POSTs and tag PATCHes carried out with their answers lost."""
    w, expected = _busy_world(make_world, graph=True)
    kills = _crash_then_finish(w, list(expected), tmp_path)

    ids = list(expected)
    for alert_id, headline in expected.items():  # as Graph's API shows each alert
        ours = _ours([c.comment or "" for c in w.graph_alert(alert_id).comments])
        assert len(ours) == 1, (alert_id, ours)
        assert ours[0].startswith(f"Joe Sandbox: {headline}"), (alert_id, ours[0])
    for incident_id, (members, tags, tag) in _INCIDENTS.items():  # and each incident
        incident = w.graph_incident(incident_id)
        assert incident.custom_tags == [*tags, tag], incident_id
        comments = _ours([c.comment or "" for c in incident.comments])
        # One comment per sample of its alerts (no sample twice, none missing), with its verdict.
        markers = [c.splitlines()[-1] for c in comments]
        assert len(markers) == len(set(markers)) == len({_sample(n) for n in members}), (incident_id, comments)
        headlines = {c.splitlines()[0].removeprefix("Joe Sandbox: ") for c in comments}
        assert headlines == {expected[ids[n - 1]] for n in members}, (incident_id, comments)
    _check_samples_endpoints_and_store(w, expected)
    assert not {route for route in w.defender("/_emulator/calls") if route.startswith("alerts.")}
    spent = _spent(w, "defender", "graph", "joe")
    assert {"runliveresponse$", "submission/(new|chunked-sample)"} <= spent
    assert {p for _, _, p in _GRAPH_WRITES} <= spent  # every Graph write lost an answer at least once
    assert kills >= _MIN_KILLS, f"only {kills} kills: the test did not crash the connector enough"


def _sample(n: int) -> str:
    """The sample alert `n` of the busy world carries."""
    return {1: "invoice", 2: "invoice", 3: "invoice", 4: "loader", 5: "tool", 6: "tool", 9: "dll"}.get(n, "url")


# -- a crash at a precise point -----------------------------------------------------------------


class _Killed(BaseException):
    """The process dies here: nothing after this point happens (the engine catches Exception only)."""


def _die_at_enqueue(monkeypatch: pytest.MonkeyPatch, connector: Connector, prefix: str) -> None:
    """The connector dies when it commits the first unit of work that enqueues a key starting
    with `prefix`: the process is gone before the commit, so nothing of that unit is written."""
    store = connector.store
    unit_of_work = store.unit_of_work

    def dying() -> UnitOfWork:
        uow = unit_of_work()
        enqueue, commit = uow.enqueue, uow.commit
        keys: list[str] = []

        def noting(key: str, due_at: float) -> None:
            keys.append(key)
            enqueue(key, due_at)

        def committing() -> Any:
            if any(k.startswith(prefix) for k in keys):
                monkeypatch.setattr(store, "unit_of_work", unit_of_work)
                raise _Killed(prefix)
            return commit()

        uow.enqueue, uow.commit = noting, committing  # type: ignore[method-assign]
        return uow

    monkeypatch.setattr(store, "unit_of_work", dying)


def _run_until_killed(connector: Connector, timeout: float = 30.0) -> None:
    """Run steps one at a time, as one worker would, until the crash point is reached."""
    app, store = connector.app, connector.store
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if app.run_next("doomed"):
                continue
        except _Killed:
            return
        due = store.next_due()
        assert due is not None, "the work ended without reaching the crash point"
        time.sleep(min(0.05, max(0.0, due - connector.ctx.now())))  # until the next item is due
    raise AssertionError("the crash point was not reached")


def _one_file_world(make_world: WorldFactory) -> tuple[World, str]:
    a = alert(1, 1, file_evidence("invoice", _INVOICE))
    raw = world(samples={"invoice": "invoice"}, machines=[machine(1, files={_INVOICE: "invoice"})], alerts=[a])
    return make_world(scenario(raw)), a["id"]


def test_a_crash_between_recording_an_alert_and_queueing_its_triage_is_healed_by_the_retry(
    make_world: WorldFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, alert_id = _one_file_world(make_world)
    with w.connector() as connector:
        _die_at_enqueue(monkeypatch, connector, "triage:")
        with pytest.raises(_Killed):
            connector.app.receive(alert_id, source="webhook")
    with w.connector() as connector:
        # Nothing of the intake was written; the sender got no answer and delivers again.
        assert connector.ctx.alerts.list() == []
        assert connector.store.pending() == 0
        assert connector.app.receive(alert_id, source="webhook").created
        drain(connector, 30)
    assert len(_ours(w.comments(alert_id))) == 1


def test_a_crash_between_creating_a_sample_job_and_queueing_it_does_not_strand_the_job(
    make_world: WorldFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, alert_id = _one_file_world(make_world)
    with w.connector() as connector:
        connector.app.receive(alert_id, source="test")
        _die_at_enqueue(monkeypatch, connector, "sample:")
        _run_until_killed(connector)
        # The triage died in its commit: no job, no link, and the alert still waits for triage.
        assert connector.ctx.jobs.list() == []
        assert connector.ctx.links.list() == []
        assert [a.record.state for a in connector.ctx.alerts.list()] == [AlertState.RECEIVED]
    with w.connector() as connector:
        drain(connector, 30)  # the triage's lease runs out first, then it runs again
        assert [j.record.state for j in connector.ctx.jobs.list()] == [JobState.DONE]
    assert len(_ours(w.comments(alert_id))) == 1
    assert len(w.submissions()) == 1


def test_a_crash_right_after_a_failed_quarantine_attempt_still_cleans_the_endpoint(
    make_world: WorldFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _quarantined_loader_alert(1, 1)
    raw = world(
        samples={"loader": "loader"},
        machines=[machine(1, quarantine=_loader_quarantine())],
        alerts=[a],
        # The script recovers the file into its folder, then GetFile times out: the attempt fails
        # with the folder on the endpoint, and only the cleanup action removes it.
        live_response={"command_seconds": 10, "getfile_timeout_seconds": 5},
    )
    w = make_world(scenario(raw))
    with w.connector() as connector:
        connector.app.receive(a["id"], source="test")
        _die_at_enqueue(monkeypatch, connector, "cleanup:")
        _run_until_killed(connector)
    assert _leftovers(w, 1) != [], "the scenario should leave the job folder until cleanup"
    with w.connector() as connector:
        drain(connector, 30)
    assert _leftovers(w, 1) == []
    (comment,) = _ours(w.comments(a["id"]))
    assert comment.startswith("Joe Sandbox: not analysed")


def _three_alerts_one_file(make_world: WorldFactory) -> tuple[World, list[str]]:
    alerts = [alert(n, 1 + n % 2, file_evidence("invoice", _INVOICE)) for n in (1, 2, 3)]
    machines = [machine(n, files={_INVOICE: "invoice"}) for n in (1, 2)]
    raw = world(samples={"invoice": "invoice"}, machines=machines, alerts=alerts)
    return make_world(scenario(raw)), [a["id"] for a in alerts]


@pytest.mark.parametrize("applied", [True, False], ids=["after-the-batch", "before-the-batch"])
def test_a_crash_around_a_batched_comment_leaves_every_alert_one_comment(
    make_world: WorldFactory, monkeypatch: pytest.MonkeyPatch, applied: bool
) -> None:
    """The process dies right after batchUpdate commented the sample's alerts (or right before it
    was sent), with the links saved `writing`: the restart reads the comments back and writes only
    what is missing."""
    w, ids = _three_alerts_one_file(make_world)
    with w.connector() as connector:
        for alert_id in ids:
            connector.app.receive(alert_id, source="test")
        original = connector.defender.comment_alerts

        def dying(alert_ids: Any, text: str) -> None:
            assert sorted(alert_ids) == sorted(ids)  # one batch for the three
            if applied:
                original(alert_ids, text)
            raise _Killed("batchUpdate")

        monkeypatch.setattr(connector.defender, "comment_alerts", dying)
        _run_until_killed(connector)
    assert [len(_ours(w.comments(i))) for i in ids] == ([1, 1, 1] if applied else [0, 0, 0])
    with w.connector() as connector:
        drain(connector, 30)
        assert {link.record.state.value for link in connector.ctx.links.list()} == {"commented"}
    assert [len(_ours(w.comments(i))) for i in ids] == [1, 1, 1]
    # One batch in all (the one that died unsent never reached Defender); the restart read the
    # three alerts back in one list call, not three GETs.
    assert w.calls("alerts.batchUpdate") == 1
    assert w.calls("alerts.get") == 0
