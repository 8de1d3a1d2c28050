"""The product, end to end: alerts in, enriched alerts out, against both emulators over sockets."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from joedefender.domain.comments import MARKER_PREFIX
from joedefender.domain.jobs import LinkState, SampleJob
from joedefender.domain.keys import comment_key
from joedefender.hosts.standalone.poller import Poller
from joedefender_emulators.scenario import load_scenario
from tests.pipeline.builders import alert, file_evidence, machine, machine_id, world
from tests.world import World, drain, scenario

WorldFactory = Callable[..., World]


DEMO_HEADLINES = {  # how each alert of the demo scenario ends: the headline of our comment
    "da638640000000000001_1001": "MALICIOUS (score 92/100)",
    "da638640000000000002_1002": "MALICIOUS (score 92/100)",
    "da638640000000000003_1003": "MALICIOUS (score 100/100)",  # recovered from the quarantine
    "da638640000000000004_1004": "SUSPICIOUS (score 55/100)",  # the machine came online later
    "da638640000000000005_1005": "CLEAN (score 4/100)",  # the machine was busy at first
    "da638640000000000006_1006": "MALICIOUS (score 80/100)",  # URL evidence
    "da638640000000000007_1007": "MALICIOUS (score 96/100)",  # known to Joe, not resubmitted
    "da638640000000000011_1011": "MALICIOUS (score 85/100)",  # on a Linux server, by GetFile
    "da638640000000000012_1012": "not analysed",  # quarantined on a Mac: restore not allowed
    "da638640000000000014_1014": "MALICIOUS (score 88/100)",  # Process evidence only: its image
    "da638640000000000015_1015": "MALICIOUS (score 90/100)",  # the DLL rundll32.exe was told to run
}


def _ours(comments: list[str]) -> list[str]:
    return [c for c in comments if MARKER_PREFIX in c]


def test_every_alert_of_the_demo_scenario_ends_as_expected(make_world: WorldFactory) -> None:
    demo = load_scenario().model_copy(update={"time_scale": 0.002})
    w = make_world(demo, JoeSandboxResubmitAfterDays="7")
    with w.connector() as connector:
        poller = Poller(connector.app, interval=0, lookback=timedelta(days=3650))
        # The poller takes in what passes the filters; the rest are given by id to see why they are skipped.
        assert poller.poll_once() == 13
        for a in demo.defender.alerts:
            connector.app.receive(a["id"], source="test")
        drain(connector, 90)
        alerts = {r.record.alert_id: r.record for r in connector.ctx.alerts.list()}

    expected = DEMO_HEADLINES
    for alert_id, headline in expected.items():
        ours = _ours(w.comments(alert_id))
        assert len(ours) == 1, (alert_id, ours)
        assert ours[0].startswith(f"Joe Sandbox: {headline}"), ours[0]
        assert ("Analysis: http://127.0.0.1:" in ours[0]) is (headline != "not analysed")
    assert "already analysed" in _ours(w.comments("da638640000000000007_1007"))[0]
    assert "AllowQuarantineRestore=true allows it" in _ours(w.comments("da638640000000000012_1012"))[0]
    assert "Sandbox: lnxubuntu22" in _ours(w.comments("da638640000000000011_1011"))[0]  # the server's Linux system
    for skipped, why in (
        ("da638640000000000008_1008", "detection source"),
        ("da638640000000000009_1009", "no file (sha256) or URL evidence"),
        ("da638640000000000010_1010", "status"),
        ("da638640000000000016_1016", "only operating-system files: C:\\Windows\\System32\\svchost.exe"),
    ):
        assert alerts[skipped].state == "skipped"
        assert why in alerts[skipped].reason
        assert _ours(w.comments(skipped)) == []

    submitted = w.submissions()
    by_sample = {s["sha256"] or s["url"] for s in submitted}
    assert len(submitted) == len(by_sample) == 8
    assert demo.samples["stealer"].sha256 not in by_sample
    assert {s["mode"] for s in submitted if s["url"]} == {"url"}
    # The quarantine attempt left nothing on the endpoint once cleanup ran.
    files = w.defender(f"/_emulator/machines/{demo.defender.machines[0].id}/files")
    assert not [f for f in files if "joedefender" in str(f).lower()], files


def test_one_hash_on_many_alerts_and_machines_is_collected_and_submitted_once(make_world: WorldFactory) -> None:
    path = "C:\\Users\\x\\Downloads\\payload.exe"
    machines = [machine(n, files={path: "payload"}) for n in (1, 2, 3)]
    alerts = [alert(n, 1 + n % 3, file_evidence("payload", path)) for n in range(1, 7)]
    w = make_world(
        scenario(
            world(
                samples={"payload": "payload bytes"},
                machines=machines,
                alerts=alerts,
                verdicts=[{"sample": "payload", "detection": "malicious", "score": 88, "threatname": "Qakbot"}],
            )
        )
    )
    w.process(*(a["id"] for a in alerts))

    assert len(w.live_responses()) == 1
    assert len(w.submissions()) == 1
    for a in alerts:
        ours = _ours(w.comments(a["id"]))
        assert len(ours) == 1
        assert "Threat: Qakbot" in ours[0]


def test_alerts_arriving_while_the_sample_is_analysed_join_the_job(make_world: WorldFactory) -> None:
    path = "C:\\temp\\late.exe"
    alerts = [alert(n, n, file_evidence("late", path)) for n in (1, 2)]
    w = make_world(
        scenario(
            world(samples={"late": "late"}, machines=[machine(1, files={path: "late"}), machine(2)], alerts=alerts)
        )
    )
    with w.connector() as connector:
        connector.app.receive(alerts[0]["id"])
        # Run until the job is waiting for Joe, then the second alert arrives.
        deadline = time.monotonic() + 30
        while not any(j.record.state == "analysing" for j in connector.ctx.jobs.list()):
            assert time.monotonic() < deadline, "the job never reached the analysis"
            connector.app.run_next("test")
        connector.app.receive(alerts[1]["id"])
        drain(connector, 60)
    assert len(w.submissions()) == 1
    assert all(len(_ours(w.comments(a["id"]))) == 1 for a in alerts)


def test_a_machine_offline_then_online_gets_its_file_collected(make_world: WorldFactory) -> None:
    path = "C:\\Users\\bob\\Desktop\\tool.exe"
    a = alert(1, 1, file_evidence("tool", path))
    w = make_world(
        scenario(
            world(
                samples={"tool": "tool"},
                machines=[machine(1, files={path: "tool"}, online=[{"start": 900}])],
                alerts=[a],
            )
        )
    )
    with w.connector() as connector:
        connector.app.receive(a["id"])
        drain(connector, 60)
        history = [(h.step, h.outcome) for h in connector.store.history("sha256:" + _sha("tool"))]
    assert ("collect", "waiting") in history
    assert ("collect", "collected") in history
    assert len(_ours(w.comments(a["id"]))) == 1
    assert len(w.submissions()) == 1


def test_a_busy_machine_is_waited_for_not_failed(make_world: WorldFactory) -> None:
    path = "D:\\build\\helper.exe"
    a = alert(1, 1, file_evidence("helper", path))
    w = make_world(
        scenario(
            world(
                samples={"helper": "helper"}, machines=[machine(1, files={path: "helper"}, busy_until=600)], alerts=[a]
            )
        )
    )
    with w.connector() as connector:
        connector.app.receive(a["id"])
        drain(connector, 60)
        history = [(h.step, h.outcome) for h in connector.store.history("sha256:" + _sha("helper"))]
    assert ("collect", "machine busy") in history
    assert ("collect", "collected") in history
    assert _ours(w.comments(a["id"]))[0].startswith("Joe Sandbox: CLEAN")


def _known_world(make_world: WorldFactory, age_days: float, **settings: str) -> World:
    path = "C:\\tools\\known.exe"
    return make_world(
        scenario(
            world(
                samples={"known": "known"},
                machines=[machine(1, files={path: "known"})],
                alerts=[alert(1, 1, file_evidence("known", path))],
                verdicts=[{"sample": "known", "detection": "malicious", "score": 70}],
                analyses=[{"sample": "known", "detection": "malicious", "score": 99, "age_days": age_days}],
            )
        ),
        **settings,
    )


def test_a_known_hash_is_not_resubmitted_unless_the_policy_says_so(make_world: WorldFactory) -> None:
    never = _known_world(make_world, 400, JoeSandboxResubmit="False")
    never.process(alert(1, 1)["id"])
    assert never.submissions() == []
    assert "score 99/100" in _ours(never.comments(alert(1, 1)["id"]))[0]
    assert never.live_responses() == []

    young = _known_world(make_world, 2, JoeSandboxResubmitAfterDays="7")
    young.process(alert(1, 1)["id"])
    assert young.submissions() == []

    old = _known_world(make_world, 30, JoeSandboxResubmitAfterDays="7")
    old.process(alert(1, 1)["id"])
    assert len(old.submissions()) == 1
    assert "score 70/100" in _ours(old.comments(alert(1, 1)["id"]))[0]

    always = _known_world(make_world, 2, JoeSandboxResubmit="True")
    always.process(alert(1, 1)["id"])
    assert len(always.submissions()) == 1


def test_resubmit_after_days_reuses_the_newest_analysis_and_names_an_older_worse_one(
    make_world: WorldFactory,
) -> None:
    """A clean analysis from yesterday and a malicious one from 40 days ago, with a 7-day policy:
    the newest is young, so the sample is not analysed again; the comment reports the clean
    verdict and names the older malicious one."""
    path = "C:\\tools\\known.exe"
    w = make_world(
        scenario(
            world(
                samples={"known": "known"},
                machines=[machine(1, files={path: "known"})],
                alerts=[alert(1, 1, file_evidence("known", path))],
                analyses=[
                    {"sample": "known", "detection": "clean", "score": 4, "age_days": 1},
                    {"sample": "known", "detection": "malicious", "score": 96, "age_days": 40},
                ],
            )
        ),
        JoeSandboxResubmitAfterDays="7",
    )
    w.process(alert(1, 1)["id"])
    assert w.submissions() == []
    (comment,) = _ours(w.comments(alert(1, 1)["id"]))
    assert comment.startswith("Joe Sandbox: CLEAN (score 4/100)")
    assert "found it MALICIOUS (score 96/100)" in comment


def test_url_evidence_is_submitted_as_a_url(make_world: WorldFactory) -> None:
    url = "HTTP://Phish.Example:80/login?next=%2Fhome#frag"
    submitted = "http://phish.example/login?next=%2Fhome#frag"
    a = alert(1, 1, {"entityType": "Url", "url": url})
    w = make_world(
        scenario(
            world(
                samples={},
                machines=[machine(1)],
                alerts=[a],
                verdicts=[
                    {"url": "http://phish.example/login?next=%2Fhome#frag", "detection": "malicious", "score": 81}
                ],
            )
        )
    )
    w.process(a["id"])
    # The URL as a browser reads it (scheme and host lowered, default port dropped), fragment kept:
    # what is submitted is the validated URL; only the job's key drops the fragment.
    (submission,) = w.submissions()
    assert submission["mode"] == "url"
    assert submission["url"] == submitted
    assert w.live_responses() == []
    assert f"URL: {submitted}" in _ours(w.comments(a["id"]))[0]


def test_bytes_that_do_not_match_the_evidence_hash_are_rejected(make_world: WorldFactory) -> None:
    path = "C:\\temp\\swapped.exe"
    # The alert names the sample "real", but the file at that path now holds other bytes.
    a = alert(1, 1, file_evidence("real", path))
    w = make_world(
        scenario(
            world(samples={"real": "real", "other": "other"}, machines=[machine(1, files={path: "other"})], alerts=[a])
        )
    )
    w.process(a["id"])
    assert w.submissions() == []
    (comment,) = _ours(w.comments(a["id"]))
    assert comment.startswith("Joe Sandbox: not analysed")
    assert "not the evidence's sha256; rejected" in comment


def test_a_quarantine_entry_found_nowhere_fails_with_a_comment_that_says_so(make_world: WorldFactory) -> None:
    a = alert(
        1,
        1,
        file_evidence("gone", "C:\\Users\\x\\AppData\\Local\\Temp\\gone.dll", status="Prevented"),
        source="WindowsDefenderAv",
        threat="Trojan:Win32/Gone",
    )
    w = make_world(scenario(world(samples={"gone": "gone"}, machines=[machine(1)], alerts=[a])))
    w.process(a["id"])
    (comment,) = _ours(w.comments(a["id"]))
    assert "quarantine entry not found on any machine" in comment
    assert w.submissions() == []
    # The endpoint is left clean: the cleanup action ran after the failed attempt.
    assert len(w.live_responses(machine_id(1))) >= 2
    assert not [f for f in w.defender(f"/_emulator/machines/{machine_id(1)}/files") if "joedefender" in str(f).lower()]


def test_write_back_after_a_crash_between_patch_and_save_does_not_comment_twice(make_world: WorldFactory) -> None:
    path = "C:\\temp\\once.exe"
    a = alert(1, 1, file_evidence("once", path))
    w = make_world(scenario(world(samples={"once": "once"}, machines=[machine(1, files={path: "once"})], alerts=[a])))
    w.process(a["id"])
    with w.connector() as connector:
        # Simulate the crash: the comment is on the alert but the link was never marked done.
        (link,) = connector.ctx.links.list()
        link.record.state = LinkState.WRITING
        with connector.ctx.changes() as changes:
            changes.save(link)
            changes.enqueue(comment_key(link.doc.key))
        drain(connector, 30)
    assert len(_ours(w.comments(a["id"]))) == 1


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_pollers_window_is_utc_whatever_the_machines_time_zone(
    make_world: WorldFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defender's times are UTC: a window taken from local time (here 14 hours ahead of UTC) would
    look half a day into the future and miss an alert updated a minute ago."""
    monkeypatch.setenv("TZ", "Etc/GMT-14")
    time.tzset()
    try:
        a = alert(1, 1, file_evidence("now", "C:\\Users\\x\\now.exe"))
        w = make_world(scenario(world(samples={"now": "now"}, machines=[machine(1)], alerts=[a])))
        with w.connector() as connector:
            poller = Poller(connector.app, interval=0, lookback=timedelta(minutes=30))
            assert poller.poll_once() == 1
            assert connector.ctx.alerts.get(a["id"]) is not None
    finally:
        monkeypatch.undo()
        time.tzset()


def test_evidence_defender_adds_later_is_picked_up_by_the_next_poll(make_world: WorldFactory) -> None:
    path = "C:\\Users\\x\\late.exe"
    a = alert(1, 1, {"entityType": "Process", "processId": 7})
    w = make_world(scenario(world(samples={"late": "late"}, machines=[machine(1, files={path: "late"})], alerts=[a])))
    with w.connector() as connector:
        # The poller's window is on the real clock, as in production: the emulated tenant's wall
        # clock is anchored to it, so the evidence added below is dated in the poller's present.
        poller = Poller(connector.app, interval=0, lookback=timedelta(days=3650))
        poller.poll_once()
        drain(connector, 30)
        assert connector.ctx.alerts.get(a["id"]).record.state == "skipped"  # type: ignore[union-attr]
        # A poll with nothing new on the alert does not look at it again.
        poller.poll_once()
        assert connector.store.pending() == 0
        late = file_evidence("late", path)
        late["sha256"] = _sha("late")
        del late["$sample"]
        response = w._http.post(f"{w.emulators.defender.url}/_emulator/alerts/{a['id']}/evidence", json=[late])
        assert response.status_code == 200
        poller.poll_once()
        drain(connector, 30)
        assert connector.ctx.alerts.get(a["id"]).record.state == "accepted"  # type: ignore[union-attr]
    assert len(_ours(w.comments(a["id"]))) == 1


def _quarantined_av_alert() -> tuple[dict[str, Any], dict[str, Any]]:
    path = "C:\\Users\\x\\AppData\\Local\\Temp\\ldr.dll"
    a = alert(1, 1, file_evidence("ldr", path, status="Prevented"), source="WindowsDefenderAv", threat="Trojan:X")
    quarantined = machine(
        1,
        quarantine=[
            {"threat_name": "Trojan:Other", "original_path": "C:\\Users\\x\\other.exe", "sample": "other"},
            {"threat_name": "Trojan:X", "original_path": path, "sample": "ldr"},
        ],
    )
    return a, quarantined


def _scripts_run(w: World, machine: str) -> list[str]:
    return [
        " ".join(p["value"] for p in c["command"]["params"])
        for action in w.live_responses(machine)
        for c in action["commands"]
        if c["command"]["type"] == "RunScript"
    ]


def _history(w: World, key: str) -> list[tuple[str, str]]:
    with w.connector() as connector:
        return [(h.outcome, h.detail) for h in connector.store.history(key)]


def test_the_demos_av_alert_is_collected_read_only_and_decoded_on_our_side(make_world: WorldFactory) -> None:
    demo = load_scenario().model_copy(update={"time_scale": 0.002})
    w = make_world(demo, JoeSandboxResubmitAfterDays="7")
    endpoint = demo.defender.machines[0].id
    before = w.defender(f"/_emulator/machines/{endpoint}/files")
    av = [a for a in demo.defender.alerts if a["detectionSource"] == "WindowsDefenderAv" and a["status"] != "Resolved"]
    w.process(*(a["id"] for a in av))

    loader = demo.samples["loader"].sha256
    (job,) = [j for j in _jobs(w) if j.sha256 == loader]
    assert [(a.strategy, a.outcome) for a in job.attempts] == [("locate", "collected")]
    assert any(s["sha256"] == loader for s in w.submissions())
    # Only the read-only locator ran: no script that restores or decodes, nothing written.
    assert _scripts_run(w, endpoint) == [f"joedefender-locate.ps1 -JobId {job.attempts[0].nonce}"]
    after = w.defender(f"/_emulator/machines/{endpoint}/files")
    assert after == before
    assert after["restores"] == []
    assert any(o == "collected" and "by locate" in d for o, d in _history(w, job.key))


def test_when_getfile_on_the_quarantine_folder_is_refused_the_on_endpoint_decode_delivers(
    make_world: WorldFactory,
) -> None:
    a, quarantined = _quarantined_av_alert()
    samples = {"ldr": "quarantined loader", "other": "another quarantined file"}
    w = make_world(scenario(world(samples=samples, machines=[quarantined], alerts=[a], quarantine_getfile=False)))
    w.process(a["id"])

    (job,) = _jobs(w)
    assert [(x.strategy, x.outcome) for x in job.attempts] == [("locate", "failed"), ("quarantine", "collected")]
    assert job.attempts[0].failure is not None
    assert "denied" in job.attempts[0].failure.text
    assert [s["sha256"] for s in w.submissions()] == [_sha("quarantined loader")]
    scripts = _scripts_run(w, machine_id(1))
    assert any("-Mode Collect" in s for s in scripts)
    assert not any("-Mode Restore" in s for s in scripts)
    files = w.defender(f"/_emulator/machines/{machine_id(1)}/files")
    assert files["restores"] == []
    assert len(files["quarantine"]) == 2  # nothing taken out of the quarantine
    assert not [f for f in files["files"] if "joedefender" in str(f).lower()]  # cleaned up


def _getfiles(w: World, machine: str) -> list[str]:
    return w.getfiles(machine)


def _delivered_by_the_locator_alone(w: World) -> tuple[SampleJob, dict[str, Any]]:
    """The one job, delivered by locate with no collect RunScript; and machine 1's files."""
    (job,) = _jobs(w)
    assert [(x.strategy, x.outcome) for x in job.attempts] == [("locate", "collected")]
    assert [s["sha256"] for s in w.submissions()] == [_sha("quarantined loader")]
    assert _scripts_run(w, machine_id(1)) == [f"joedefender-locate.ps1 -JobId {job.attempts[0].nonce}"]
    return job, w.defender(f"/_emulator/machines/{machine_id(1)}/files")


def test_locate_reads_the_entries_so_an_entry_older_than_the_newest_eight_is_still_fetched(
    make_world: WorldFactory,
) -> None:
    path = "C:\\Users\\x\\AppData\\Local\\Temp\\ldr.dll"
    a = alert(1, 1, file_evidence("ldr", path, status="Prevented"), source="WindowsDefenderAv", threat="Trojan:X")
    newer = [
        {"threat_name": "Trojan:Y", "original_path": f"C:\\Users\\x\\new{n}.exe", "sample": f"n{n}"} for n in range(9)
    ]
    # The evidence's entry is the oldest: the newest-8 listing alone would miss it.
    quarantined = machine(
        1, quarantine=[{"threat_name": "Trojan:X", "original_path": path.upper(), "sample": "ldr"}, *newer]
    )
    samples = {"ldr": "quarantined loader", **{f"n{n}": f"newer quarantined file {n}" for n in range(9)}}
    w = make_world(scenario(world(samples=samples, machines=[quarantined], alerts=[a])))
    w.process(a["id"])

    job, files = _delivered_by_the_locator_alone(w)
    (entry,) = [q for q in files["quarantine"] if q["threatName"] == "Trojan:X"]
    # Two actions: the locator printed the Entries files (none fetched), then only the match.
    assert _getfiles(w, machine_id(1)) == [entry["resourceData"]]
    assert len(w.live_responses(machine_id(1))) == 2
    (located,) = [d for o, d in _history(w, job.key) if o == "located"]
    assert located.endswith("; entries matched: 10 Entries files read; fetching 1")


def test_locate_falls_back_to_the_newest_listed_when_the_entries_cannot_be_read(make_world: WorldFactory) -> None:
    a, quarantined = _quarantined_av_alert()
    samples = {"ldr": "quarantined loader", "other": "another quarantined file"}
    w = make_world(scenario(world(samples=samples, machines=[quarantined], alerts=[a], damaged_entries=True)))
    w.process(a["id"])

    job, files = _delivered_by_the_locator_alone(w)
    fetched = [p for p in _getfiles(w, machine_id(1)) if "\\ResourceData\\" in p]
    assert fetched == [q["resourceData"] for q in reversed(files["quarantine"])]  # the listing, newest first
    (located,) = [d for o, d in _history(w, job.key) if o == "located"]
    assert located.endswith("; listing fallback (0 of 2 Entries files read, none names the evidence); fetching 2")
    assert len(w.live_responses(machine_id(1))) == 2


def _jobs(w: World) -> list[SampleJob]:
    with w.connector() as connector:
        return [j.record for j in connector.ctx.jobs.list()]


def test_a_submission_joe_refuses_as_invalid_fails_at_once_with_a_comment(make_world: WorldFactory) -> None:
    """Joe's "invalid value for parameter" (error code 3) is permanent: one try, then the comment."""
    path = "C:\\tools\\refused.exe"
    raw = world(
        samples={"refused": "refused"},
        machines=[machine(1, files={path: "refused"})],
        alerts=[alert(1, 1, file_evidence("refused", path))],
    )
    raw["faults"] = [
        {"service": "joe", "path": "submission/new", "status": 400, "code": 3, "message": "invalid value for parameter"}
    ]
    w = make_world(scenario(raw))
    w.process(alert(1, 1)["id"])
    (comment,) = _ours(w.comments(alert(1, 1)["id"]))
    assert comment.startswith("Joe Sandbox: not analysed\nReason: refused as invalid, not retried: Joe Sandbox:")
    assert "invalid value for parameter" in comment
    assert int(w.joe("/_emulator/calls").get("submission/new", {}).get("calls", 0)) == 1


def test_evidence_defender_adds_to_a_commented_alert_is_analysed_when_the_alert_comes_again(
    make_world: WorldFactory,
) -> None:
    path = "C:\\Users\\u\\first.exe"
    a = alert(1, 1, file_evidence("first", path))
    url = "http://late.example/payload"
    w = make_world(
        scenario(
            world(
                samples={"first": "first"},
                machines=[machine(1, files={path: "first"})],
                alerts=[a],
                verdicts=[{"url": url, "detection": "malicious", "score": 77}],
            )
        )
    )
    w.process(a["id"])
    assert len(_ours(w.comments(a["id"]))) == 1
    response = w._http.post(
        f"{w.emulators.defender.url}/_emulator/alerts/{a['id']}/evidence", json=[{"entityType": "Url", "url": url}]
    )
    assert response.status_code == 200
    w.process(a["id"])  # delivered again (webhook retry, `process`): triaged again, new sample only
    ours = _ours(w.comments(a["id"]))
    assert len(ours) == 2
    assert sum(1 for c in ours if c.startswith("Joe Sandbox: MALICIOUS (score 77/100)") and url in c) == 1
    assert [s["url"] for s in w.submissions() if s["url"]] == [url]
    assert len([s for s in w.submissions() if s["sha256"]]) == 1
