"""What someone in control of an endpoint could plant for the connector, end to end against the
emulators (issue 18 items 1 and 11).

Crafted Entries files in the quarantine (anyone who can write there: a local admin, malware
running as SYSTEM): each is refused in a few milliseconds, and the real entry beside them still
delivers the file. A work folder someone made first: any local user may create
C:\\ProgramData\\joedefender before the connector comes, or make it a junction to a folder of
their own. The collect script then refuses the machine's on-endpoint strategies with a status
line of its own, the attempt fails with that reason in the job's history, and the job moves on
to another machine or strategy; nothing is written into the planted folder or where its
junction leads, and nothing is restored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from joedefender.domain.jobs import SampleJob
from joedefender.domain.reasons import Reason
from joedefender.endpoint.contract import WORK_ROOT
from joedefender_emulators.scenario import LOCAL_USER_SID, USERS_SID
from tests.pipeline.builders import alert, file_evidence, machine, machine_id, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]

PATH = "C:\\Users\\x\\AppData\\Local\\Temp\\ldr.dll"
SAMPLES = {"ldr": "quarantined loader"}
LOOT = "C:\\Users\\mallory\\loot"


def _quarantined(n: int, **extra: Any) -> dict[str, Any]:
    return machine(n, quarantine=[{"threat_name": "Trojan:X", "original_path": PATH, "sample": "ldr"}], **extra)


def _av_alert(n: int) -> dict[str, Any]:
    evidence = file_evidence("ldr", PATH, status="Prevented")
    return alert(n, n, evidence, source="WindowsDefenderAv", threat="Trojan:X")


def _job(w: World) -> tuple[SampleJob, list[tuple[str, str]]]:
    with w.connector() as connector:
        (stored,) = connector.ctx.jobs.list()
        history = [(h.outcome, h.detail) for h in connector.store.history(stored.record.key)]
    return stored.record, history


def _attempts(job: SampleJob) -> list[tuple[str, str, str, Reason | None]]:
    return [(a.machine_id, a.strategy, a.outcome or "", a.failure.reason if a.failure else None) for a in job.attempts]


def test_a_pre_created_work_root_fails_the_attempt_with_its_reason_and_another_machine_delivers(
    make_world: WorldFactory,
) -> None:
    planted = {"path": WORK_ROOT, "owner": LOCAL_USER_SID, "access": [LOCAL_USER_SID, USERS_SID]}
    # The second machine comes online later (3 s real), so the first is tried first.
    machines = [_quarantined(1, planted_folders=[planted]), _quarantined(2, online=[{"start": 1500}])]
    raw = world(samples=SAMPLES, machines=machines, alerts=[_av_alert(1), _av_alert(2)], quarantine_getfile=False)
    w = make_world(scenario(raw))
    w.process(_av_alert(1)["id"], _av_alert(2)["id"])

    job, history = _job(w)
    assert _attempts(job) == [
        (machine_id(1), "locate", "failed", Reason.ACTION_FAILED),  # GetFile on the quarantine denied
        (machine_id(1), "quarantine", "failed", Reason.WORK_FOLDER_UNSAFE),
        (machine_id(1), "getfile", "failed", Reason.ACTION_FAILED),  # the file is gone from its path
        (machine_id(2), "locate", "failed", Reason.ACTION_FAILED),
        (machine_id(2), "quarantine", "collected", None),
    ]
    failure = job.attempts[1].failure
    assert failure is not None
    assert f"{WORK_ROOT} is owned by {LOCAL_USER_SID}, not SYSTEM or Administrators" in failure.text
    assert ("attempt failed", f"quarantine on {machine_id(1)}: {failure.text}") in history
    assert [s["sha256"] for s in w.submissions()] == [w.scenario.samples["ldr"].sha256]
    # The planted folder is as the user left it, and nothing of ours is under it.
    files = w.defender(f"/_emulator/machines/{machine_id(1)}/files")
    assert files["folders"] == [
        {"path": WORK_ROOT, "owner": LOCAL_USER_SID, "access": [LOCAL_USER_SID, USERS_SID], "junctionTo": None}
    ]
    assert files["files"] == []
    # The other machine's work root was made SYSTEM's own; its job folder is gone after cleanup.
    folders = w.defender(f"/_emulator/machines/{machine_id(2)}/files")["folders"]
    assert folders == [
        {"path": WORK_ROOT, "owner": "S-1-5-18", "access": ["S-1-5-18", "S-1-5-32-544"], "junctionTo": None}
    ]


def test_a_planted_junction_fails_both_scripted_strategies_and_nothing_is_restored(make_world: WorldFactory) -> None:
    planted = {"path": WORK_ROOT, "owner": "S-1-5-18", "access": ["S-1-5-18"], "junction_to": LOOT}
    loot = {"path": LOOT, "owner": LOCAL_USER_SID, "access": [LOCAL_USER_SID]}
    target = _quarantined(1, planted_folders=[planted, loot])
    raw = world(samples=SAMPLES, machines=[target], alerts=[_av_alert(1)], quarantine_getfile=False)
    w = make_world(scenario(raw), AllowQuarantineRestore="true")
    w.process(_av_alert(1)["id"])

    job, history = _job(w)
    assert _attempts(job) == [
        (machine_id(1), "locate", "failed", Reason.ACTION_FAILED),
        (machine_id(1), "quarantine", "failed", Reason.WORK_FOLDER_UNSAFE),
        (machine_id(1), "getfile", "failed", Reason.ACTION_FAILED),  # the file is gone from its path
        (machine_id(1), "restore", "failed", Reason.WORK_FOLDER_UNSAFE),
    ]
    junction = f"{WORK_ROOT} is a reparse point (a junction or link); refusing to use it"
    assert len([d for o, d in history if o == "attempt failed" and junction in d]) == 2
    assert job.failure is not None
    assert junction in job.failure.text  # the job's own reason, in the alert's comment, says why
    files = w.defender(f"/_emulator/machines/{machine_id(1)}/files")
    assert files["restores"] == []  # MpCmdRun never ran: the entry is still in the quarantine
    assert len(files["quarantine"]) == 1
    assert files["files"] == []  # nothing written where the junction leads
    assert w.submissions() == []


@pytest.mark.parametrize("script_read", [True, False])
def test_crafted_entries_beside_the_real_one_are_refused_and_the_real_one_delivers(
    make_world: WorldFactory, script_read: bool
) -> None:
    # Newest first, so the connector reads them before the real one; with as many resources as
    # the file holds (a quadratic parser would take hours on the first) and with 100. At 1 MiB
    # each, the locator lists them without their bytes.
    planted = [
        {"layout": layout, "resources": resources}
        for layout in ("shared path (legal length)", "shared path (odd NULs)", "staggered path", "field flood")
        for resources in (None, 100)
    ]
    target = _quarantined(1, planted_entries=planted)
    raw = world(samples=SAMPLES, machines=[target], alerts=[_av_alert(1)], quarantine_script_read=script_read)
    w = make_world(scenario(raw))
    w.process(_av_alert(1)["id"], timeout=30)

    job, history = _job(w)
    assert _attempts(job) == [(machine_id(1), "locate", "collected", None)]
    entries = [p for p in w.getfiles(machine_id(1)) if "\\Entries\\" in p]
    if script_read:  # the real one was printed and names the evidence: the crafted ones are never read
        assert any(
            o == "located" and d.endswith("; entries matched: 1 Entries files read; fetching 1") for o, d in history
        )
        assert entries == []
    else:  # none printed: every one is fetched, and read
        assert ("selected", "entries matched: 1 Entries files read; fetching 1") in history
        assert len(entries) == len(planted) + 1
    assert [s["sha256"] for s in w.submissions()] == [w.scenario.samples["ldr"].sha256]
