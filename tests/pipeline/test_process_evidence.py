"""Process evidence end to end, against the emulators over sockets: the image that ran is a sample
(unless it is Windows' own), and so is the file a system binary's command line told it to run,
collected by its path and from then on the sample of its hash."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from joedefender.domain.comments import MARKER_PREFIX
from joedefender.domain.jobs import AlertState, JobState, LinkState
from joedefender.domain.samples import SampleKey
from tests.hosts import environment, joedefender
from tests.pipeline.builders import alert as _alert
from tests.pipeline.builders import file_evidence, machine, machine_id, process_evidence, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]

IMAGE = "C:\\Users\\erin\\AppData\\Local\\Temp\\QuickUpdater.exe"
RUNDLL32 = "C:\\Windows\\SysWOW64\\rundll32.exe"
DLL = "C:\\ProgramData\\Vendor\\Cache\\upd.dll"
SVCHOST = "C:\\Windows\\System32\\svchost.exe"
POWERSHELL = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
SAMPLES = {
    "updater": "unsigned updater stand-in",
    "dll": "DLL run by rundll32 stand-in",
    # Windows' own binaries, on the machines: a connector that took them for samples could submit them.
    "rundll32": "rundll32.exe stand-in",
    "svchost": "svchost.exe stand-in",
    "powershell": "powershell.exe stand-in",
}
FILES = {IMAGE: "updater", DLL: "dll", RUNDLL32: "rundll32", SVCHOST: "svchost", POWERSHELL: "powershell"}
VERDICTS = [
    {"sample": "updater", "detection": "malicious", "score": 77, "threatname": "Remcos"},
    {"sample": "dll", "detection": "malicious", "score": 93, "threatname": "IcedID"},
]


def alert(n: int, on_machine: int, *evidence: dict[str, Any]) -> dict[str, Any]:
    """An EDR alert in an incident (Graph lists no alert that is in none)."""
    return _alert(n, on_machine, *evidence) | {"incidentId": 700 + n}


def _world(make_world: WorldFactory, alerts: list[dict[str, Any]], *, files: Any = None, **settings: Any) -> World:
    analyses = settings.pop("analyses", [])
    machines = [machine(n, files=FILES if files is None else files) for n in (1, 2)]
    raw = world(samples=SAMPLES, machines=machines, alerts=alerts, verdicts=VERDICTS, analyses=analyses)
    return make_world(scenario(raw), **settings)


def _rundll32(n: int, on_machine: int = 1, dll: str = DLL) -> dict[str, Any]:
    return alert(n, on_machine, process_evidence(RUNDLL32, f"rundll32.exe  {dll},Start", sample="rundll32"))


def _ours(w: World, alert_id: str) -> list[str]:
    return [c for c in w.comments(alert_id) if MARKER_PREFIX in c]


def _submitted(w: World) -> list[str]:
    return [s["sha256"] for s in w.submissions()]


def _sha(w: World, sample: str) -> str:
    return w.scenario.samples[sample].sha256


@pytest.mark.parametrize("source", ["mde", "graph"])
def test_an_alert_with_only_process_evidence_is_commented_once_with_its_images_verdict(
    make_world: WorldFactory, source: str
) -> None:
    a = alert(1, 1, process_evidence(IMAGE, f'"{IMAGE}" /silent', sample="updater"), {"entityType": "User"})
    w = _world(make_world, [a], AlertSource=source)
    w.process(a["id"])

    [comment] = _ours(w, a["id"])
    assert comment.startswith("Joe Sandbox: MALICIOUS (score 77/100)")
    assert f"\nProcess image: {IMAGE}\n" in comment
    assert f"\nSHA-256: {_sha(w, 'updater')}\n" in comment
    assert _submitted(w) == [_sha(w, "updater")]
    assert w.getfiles(machine_id(1)) == [IMAGE]  # GetFile on the image's path, hash-checked


@pytest.mark.parametrize("source", ["mde", "graph"])
def test_the_dll_rundll32_ran_is_collected_by_its_path_and_commented_and_rundll32_is_not_submitted(
    make_world: WorldFactory, source: str
) -> None:
    # Two alerts name the same file, in two spellings, through two binaries: one file on one machine.
    regsvr32 = "C:\\Windows\\System32\\regsvr32.exe"
    a1 = _rundll32(1)
    a2 = alert(2, 1, process_evidence(regsvr32, f"regsvr32 /s {DLL.lower()}"))
    w = _world(make_world, [a1, a2], AlertSource=source)
    w.process(a1["id"], a2["id"])

    sha = _sha(w, "dll")
    for a, runner, path in ((a1, "rundll32.exe", DLL), (a2, "regsvr32.exe", "C:" + DLL.lower()[2:])):
        [comment] = _ours(w, a["id"])
        assert comment.startswith("Joe Sandbox: MALICIOUS (score 93/100)"), comment
        assert f"\nRun by {runner}: {path}\n" in comment  # as the command line spelled it
        assert f"\nSHA-256: {sha}\n" in comment
    assert _submitted(w) == [sha]  # the DLL, once; never rundll32.exe, Windows' own binary
    # One GetFile of the DLL: the job of its hash submits the bytes that collection fetched.
    assert len(w.getfiles(machine_id(1))) == 1
    assert w.getfiles(machine_id(1))[0].lower() == DLL.lower()
    with w.connector() as connector:
        jobs = {j.record.kind: j.record for j in connector.ctx.jobs.list()}
        assert (jobs["path"].state, jobs["path"].sha256) == (JobState.RESOLVED, sha)
        assert jobs["file"].state == JobState.DONE
        links = sorted(
            (link.record.sample_key.partition(":")[0], link.record.state) for link in connector.ctx.links.list()
        )
        moved, commented = ("path", LinkState.MOVED), ("sha256", LinkState.COMMENTED)
        assert links == [moved, moved, commented, commented]  # each alert's link went to the hash's job


def test_a_file_and_a_process_image_of_one_hash_on_two_alerts_make_one_submission_and_two_comments(
    make_world: WorldFactory,
) -> None:
    a1 = alert(1, 1, file_evidence("updater", IMAGE))
    a2 = alert(2, 2, process_evidence(IMAGE, None, sample="updater"))
    w = _world(make_world, [a1, a2])
    w.process(a1["id"], a2["id"])

    assert _submitted(w) == [_sha(w, "updater")]
    [file_comment], [process_comment] = _ours(w, a1["id"]), _ours(w, a2["id"])
    assert "\nFile: QuickUpdater.exe\n" in file_comment
    assert f"\nProcess image: {IMAGE}\n" in process_comment
    for comment in (file_comment, process_comment):
        assert comment.startswith("Joe Sandbox: MALICIOUS (score 77/100)")
    assert len(w.live_responses()) == 1  # one job: collected once, from one of the machines


def test_a_command_line_target_whose_hash_has_a_job_already_joins_it_without_a_second_submission(
    make_world: WorldFactory,
) -> None:
    a1 = alert(1, 1, file_evidence("dll", DLL))
    a2 = _rundll32(2, on_machine=2)
    w = _world(make_world, [a1, a2])
    w.process(a1["id"])
    assert _submitted(w) == [_sha(w, "dll")]
    w.process(a2["id"])  # the DLL's job is done by now: the file, collected by its path, joins it

    assert _submitted(w) == [_sha(w, "dll")]
    assert w.getfiles(machine_id(2)) == [DLL]
    [comment] = _ours(w, a2["id"])
    assert comment.startswith("Joe Sandbox: MALICIOUS (score 93/100)")
    assert f"\nRun by rundll32.exe: {DLL}\n" in comment
    assert len(_ours(w, a1["id"])) == 1
    with w.connector() as connector:
        history = [(h.step, h.outcome) for h in connector.store.history(f"sha256:{_sha(w, 'dll')}")]
        assert ("job", "joined") in history
    # `status` shows the alert's two jobs: the path job, resolved to the hash, and the hash's job.
    detail = _status(w, a2["id"])
    assert f"Sample {SampleKey.for_path(machine_id(2), DLL).id}: resolved" in detail
    assert f"Sample sha256:{_sha(w, 'dll')}: done" in detail
    assert f"the file at its path is sha256:{_sha(w, 'dll')}" in detail


def test_a_command_line_target_known_to_joe_is_not_submitted_again(make_world: WorldFactory) -> None:
    a = _rundll32(1)
    known = {"sample": "dll", "detection": "malicious", "score": 95, "threatname": "IcedID", "age_days": 2}
    w = _world(make_world, [a], analyses=[known], JoeSandboxResubmitAfterDays="7")
    w.process(a["id"])

    assert _submitted(w) == []
    [comment] = _ours(w, a["id"])
    assert comment.startswith("Joe Sandbox: MALICIOUS (score 95/100)")
    assert f"\nRun by rundll32.exe: {DLL}\n" in comment
    assert "already analysed" in comment


def test_a_command_line_target_not_on_the_machine_is_commented_as_not_analysed(make_world: WorldFactory) -> None:
    a = _rundll32(1, dll="C:\\ProgramData\\Vendor\\gone.dll")
    w = _world(make_world, [a])
    w.process(a["id"])

    [comment] = _ours(w, a["id"])
    assert comment.startswith("Joe Sandbox: not analysed\nReason: could not collect the file")
    assert "\nRun by rundll32.exe: C:\\ProgramData\\Vendor\\gone.dll\n" in comment
    assert "SHA-256" not in comment  # never collected, so never hashed
    assert _submitted(w) == []


def test_alerts_whose_processes_are_only_system_binaries_submit_nothing_and_say_why_in_status(
    make_world: WorldFactory,
) -> None:
    a = alert(
        1,
        1,
        process_evidence(SVCHOST, f"{SVCHOST} -k netsvcs -p -s Schedule", sample="svchost"),
        process_evidence(POWERSHELL, "powershell.exe -NoProfile -EncodedCommand SQBFAFgA", sample="powershell"),
        process_evidence(RUNDLL32, "rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 624 x full"),
    )
    w = _world(make_world, [a])
    w.process(a["id"])

    assert _submitted(w) == []
    assert w.live_responses() == []
    assert _ours(w, a["id"]) == []
    overview = _status(w)
    [row] = [line for line in overview.splitlines() if a["id"] in line]
    assert "skipped" in row
    assert "only operating-system files" in overview
    detail = _status(w, a["id"])
    assert "process image C:\\Windows\\System32\\svchost.exe is an operating-system file" in detail
    assert "C:\\Windows\\System32\\comsvcs.dll is an operating-system file" in detail


def test_with_both_settings_off_process_evidence_gives_no_sample(make_world: WorldFactory) -> None:
    a1 = alert(1, 1, process_evidence(IMAGE, None, sample="updater"))
    a2 = _rundll32(2)
    w = _world(make_world, [a1, a2], AnalyseProcessImages="false", FetchCommandLineTargets="false")
    w.process(a1["id"], a2["id"])

    assert _submitted(w) == []
    assert w.live_responses() == []
    with w.connector() as connector:
        for a in (a1, a2):
            stored = connector.ctx.alerts.get(a["id"])
            assert stored is not None
            assert stored.record.state == AlertState.SKIPPED
        notes = [h.detail for h in connector.store.history(f"alert:{a1['id']}")]
    assert any("AnalyseProcessImages is off" in note for note in notes)


def _status(w: World, *alert_ids: str) -> str:
    done = subprocess.run(
        joedefender("status", *alert_ids),
        env=environment(w.values) | {"COLUMNS": "400"},  # wide enough that no cell folds
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
