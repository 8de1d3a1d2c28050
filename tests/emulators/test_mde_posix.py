"""Linux and macOS machines in the MDE emulator: live response on several osPlatform spellings and
agent versions, GetFile on POSIX paths, PutFile's 10 MB limit, and RunScript running the real
joedefender-collect.sh with bash against the device's mdatp model (scenario linux-macos.yaml)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
from importlib import resources
from typing import Any

import httpx
import pytest
import yaml

from joedefender.domain.platforms import Platform
from joedefender.endpoint.contract import defang, script_bytes
from joedefender.endpoint.posix_contract import SCRIPT_NAME, PosixCollectRequest, format_args, read_outcome, sample_path
from joedefender_emulators.mde.bash_sandbox import sandbox_works

from .conftest import CLIENT, SECRET, TENANT, MakeMde, MdeHarness, command

UBUNTU, RHEL_OLD_AGENT, MAC, TOO_OLD, PHONE = (f"a{n}" * 20 for n in range(1, 6))
_why_not = sandbox_works()
requires_sandbox = pytest.mark.skipif(
    _why_not is not None and os.environ.get("JOEDEFENDER_REQUIRE_SANDBOX") != "1",
    reason=f"the Bash script runs in bubblewrap: {_why_not}",
)


def _raw(**live_response: Any) -> dict[str, Any]:
    text = resources.files("joedefender_emulators").joinpath("scenarios/linux-macos.yaml").read_text("utf-8")
    raw: dict[str, Any] = yaml.safe_load(text)
    raw["time_scale"] = 1.0
    raw["defender"].update(tenant_id=TENANT, client_id=CLIENT, client_secret=SECRET, alert_times="as_given")
    raw["defender"]["live_response"] = live_response
    return raw


def _sample(raw: dict[str, Any], name: str) -> bytes:
    blob = raw["samples"][name]
    return blob["text"].encode() if "text" in blob else base64.b64decode(blob["base64"])


def _run(mde: MdeHarness, machine: str, commands: list[dict[str, Any]], seconds: float = 120) -> dict[str, Any]:
    response = mde.run_live_response(machine, commands)
    assert response.status_code == 201, response.text
    mde.advance(seconds)
    return mde.action(response.json()["id"])


def _download(mde: MdeHarness, action_id: str, index: int) -> bytes:
    link = mde.get(f"/api/machineactions/{action_id}/GetLiveResponseResultDownloadLink(index={index})")
    assert link.status_code == 200, link.text
    return httpx.get(link.json()["value"], verify=mde.ssl).content


def _files(mde: MdeHarness, machine: str) -> dict[str, Any]:
    result: dict[str, Any] = mde.inspect(f"machines/{machine}/files")
    return result


@pytest.fixture
def mde(make_mde: MakeMde) -> MdeHarness:
    return make_mde(_raw())


def test_linux_and_macos_spellings_take_live_response_and_the_rest_is_refused(make_mde: MakeMde) -> None:
    raw = _raw()
    for n, spelling in enumerate(["Debian", "CentOS", "Linux", "MacOs", "SuseLinux"]):
        raw["defender"]["machines"].append({"id": f"{n:02d}" * 20, "computerDnsName": f"m{n}", "osPlatform": spelling})
    mde = make_mde(raw)
    for machine in [UBUNTU, MAC, *(f"{n:02d}" * 20 for n in range(5))]:
        assert mde.run_live_response(machine, [command("GetFile", Path="/etc/hostname")]).status_code == 201
    phone = mde.run_live_response(PHONE, [command("GetFile", Path="/x")])
    assert (phone.status_code, phone.json()["error"]["code"]) == (400, "OsPlatformNotSupported")
    old = mde.run_live_response(TOO_OLD, [command("GetFile", Path="/x")])
    assert old.status_code == 400
    assert "101.45.13" in old.json()["error"]["message"]
    machines = {m["id"]: m for m in mde.get("/api/machines").json()["value"]}
    assert machines[UBUNTU]["osPlatform"] == "Ubuntu"
    assert machines[UBUNTU]["agentVersion"] == "101.24122.0008"
    assert "agentVersion" not in machines[PHONE]


def test_getfile_takes_posix_paths_case_sensitively_on_linux_not_on_macos(mde: MdeHarness) -> None:
    raw = _raw()
    action = _run(mde, UBUNTU, [command("GetFile", Path="/var/www/html/uploads/shell.php")])
    assert action["status"] == "Succeeded"
    assert gzip.decompress(_download(mde, action["id"], 0)) == _sample(raw, "webshell")
    for path in (
        "/VAR/www/html/uploads/shell.php",
        "C:\\var\\www\\html\\uploads\\shell.php",
        "var/www/html/uploads/shell.php",
    ):
        failed = _run(mde, UBUNTU, [command("GetFile", Path=path)])
        assert failed["status"] == "Failed", path
    mac = _run(mde, MAC, [command("GetFile", Path="/users/CAROL/downloads/INSTALL.sh")])
    assert mac["status"] == "Succeeded"


def test_getfile_refuses_links_sparse_and_empty_files(make_mde: MakeMde) -> None:
    raw = _raw()
    raw["samples"]["empty"] = {"text": ""}
    raw["defender"]["machines"][0]["files"] += [
        {"path": "/usr/bin/python", "sample": "webshell", "kind": "link"},
        {"path": "/var/lib/big.img", "sample": "webshell", "kind": "sparse"},
        {"path": "/tmp/empty", "sample": "empty"},
    ]
    mde = make_mde(raw)
    for path, says in (("/usr/bin/python", "symbolic link"), ("/var/lib/big.img", "sparse"), ("/tmp/empty", "empty")):
        action = _run(mde, UBUNTU, [command("GetFile", Path=path)])
        assert action["status"] == "Failed"
        assert says in action["commands"][0]["errors"][0]


def test_putfile_takes_at_most_10_mb_on_linux_and_macos(mde: MdeHarness) -> None:
    assert mde.upload("tool.bin", b"\0" * (10 * 1024 * 1024 + 1)).status_code == 200
    for machine in (UBUNTU, MAC):
        action = _run(mde, machine, [command("PutFile", FileName="tool.bin")])
        assert action["status"] == "Failed"
        assert "10 MB" in action["commands"][0]["errors"][0]
    assert mde.upload("small.bin", b"\0" * 1024).status_code == 200
    assert _run(mde, UBUNTU, [command("PutFile", FileName="small.bin")])["status"] == "Succeeded"


@requires_sandbox
def test_bash_runs_on_linux_unsigned_and_powershell_does_not(make_mde: MakeMde) -> None:
    raw = _raw()
    raw["defender"]["unsigned_scripts_allowed"] = False  # signature checks are for PowerShell only
    mde = make_mde(raw)
    assert mde.upload("hello.sh", b'#!/bin/bash\necho "hello $# $1 $2"\n', HasParameters="true").status_code == 200
    assert mde.upload("hello.ps1", b"Write-Output hello\n").status_code == 200
    ran = _run(mde, UBUNTU, [command("RunScript", ScriptName="hello.sh", Args="one  two")])
    assert ran["status"] == "Succeeded"
    result = json.loads(_download(mde, ran["id"], 0))
    assert (result["exit_code"], result["script_output"]) == (0, "hello 2 one two\n")
    for machine, script, args in ((UBUNTU, "hello.ps1", ""), (UBUNTU, "hello.sh", "$HOME"), (MAC, "hello.sh", "a;b")):
        refused = _run(mde, machine, [command("RunScript", ScriptName=script, Args=args)])
        assert refused["status"] == "Failed", (script, args)


@requires_sandbox
@pytest.mark.parametrize(
    ("machine", "original"), [(UBUNTU, "/tmp/.x/kworkerd"), (RHEL_OLD_AGENT, "/opt/app/bin/updater")]
)
def test_the_collect_script_restores_and_getfile_fetches_the_defanged_sample(
    mde: MdeHarness, machine: str, original: str
) -> None:
    payload = _sample(_raw(), "miner")
    sha = hashlib.sha256(payload).hexdigest()
    assert mde.upload(SCRIPT_NAME, script_bytes(SCRIPT_NAME), HasParameters="true").status_code == 200
    args = format_args(PosixCollectRequest("Restore", "job-42", sha, original))
    path = sample_path(Platform.LINUX, "job-42")
    action = _run(
        mde, machine, [command("RunScript", ScriptName=SCRIPT_NAME, Args=args), command("GetFile", Path=path)]
    )
    assert action["status"] == "Succeeded", action
    outcome = read_outcome(json.loads(_download(mde, action["id"], 0))["script_output"], Platform.LINUX, "job-42")
    assert (outcome.status, outcome.size) == ("found", len(payload))
    assert defang(gzip.decompress(_download(mde, action["id"], 1))) == payload
    files = _files(mde, machine)
    assert (files["quarantine"], files["restores"], files["exclusions"]) == ([], [original], [])
    assert [f["path"] for f in files["files"] if f["path"].startswith("/var/opt/")] == [path]

    cleanup = format_args(PosixCollectRequest("Cleanup", "job-42"))
    assert _run(mde, machine, [command("RunScript", ScriptName=SCRIPT_NAME, Args=cleanup)])["status"] == "Succeeded"
    files = _files(mde, machine)
    assert [f["path"] for f in files["files"] if f["path"].startswith("/var/opt/")] == []
    assert files["exclusions"] == []
    assert [f for f in files["folders"] if f.startswith("/var/opt/joedefender/")] == []


@requires_sandbox
def test_a_script_that_outlives_live_responses_timeout_is_killed_and_the_action_times_out(make_mde: MakeMde) -> None:
    mde = make_mde(_raw(script_real_seconds=1.0))
    assert mde.upload("stubborn.sh", b"#!/bin/bash\ntrap '' TERM\nsleep 30\n").status_code == 200
    action = _run(mde, UBUNTU, [command("RunScript", ScriptName="stubborn.sh")])
    assert action["status"] == "TimeOut"
    assert "timed out" in action["commands"][0]["errors"][0]
