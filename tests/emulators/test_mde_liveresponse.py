"""runliveresponse: validation, the one-session rules, the lifecycle on the emulated clock, the
collection script driven through the connector's contract, and result download links
(mde-api.md section 4)."""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from joedefender.endpoint import contract

from .conftest import BUSY, CLIENT, LATER, NEVER, ONLINE, command, mde_scenario_raw

EVIL_PATH = "C:\\Users\\alice\\Downloads\\evil.exe"
GET_EVIL = command("GetFile", Path=EVIL_PATH)


def _created(mde: Any, machine_id: str, commands: list[dict[str, Any]]) -> dict[str, Any]:
    response = mde.run_live_response(machine_id, commands)
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def _download(mde: Any, action_id: str, index: int) -> bytes:
    link = mde.get(f"/api/machineactions/{action_id}/GetLiveResponseResultDownloadLink(index={index})")
    assert link.status_code == 200, link.text
    assert link.json()["@odata.context"].endswith("$metadata#Edm.String")
    url = link.json()["value"]
    assert "/api/" not in url
    response = httpx.get(url, verify=mde.ssl)  # no bearer token: the URL is its own credential
    assert response.status_code == 200, response.text
    return response.content


def _script_result(mde: Any, action_id: str, index: int) -> dict[str, Any]:
    result = json.loads(_download(mde, action_id, index))
    assert isinstance(result, dict)
    assert set(result) == {"script_name", "exit_code", "script_output", "script_errors"}
    return result


def test_created_action_is_pending_with_created_commands(mde):
    action = _created(mde, ONLINE, [command("RunScript", ScriptName="a.ps1", Args="-x 1"), GET_EVIL])
    assert action["@odata.context"].endswith("$metadata#MachineActions/$entity")
    assert action["type"] == "LiveResponse"
    assert action["status"] == "Pending"
    assert action["machineId"] == ONLINE
    assert action["computerDnsName"] == "desk-01.contoso.local"
    assert action["requestor"] == CLIENT
    assert action["requestorComment"] == "test"
    assert action["errorHResult"] == 0
    assert [c["commandStatus"] for c in action["commands"]] == ["Created", "Created"]
    assert action["commands"][0]["command"] == {
        "type": "RunScript",
        "params": [{"key": "ScriptName", "value": "a.ps1"}, {"key": "Args", "value": "-x 1"}],
    }
    assert action["commands"][1]["index"] == 1
    assert action["commands"][0]["startTime"] is None


BAD_BODIES = [
    ({"commands": [GET_EVIL], "Comment": "x"}, "InvalidRequestBody"),
    ({"Commands": [GET_EVIL], "comment": "x"}, "InvalidRequestBody"),
    ({"Commands": [GET_EVIL]}, "MissingRequiredParameter"),
    ({"Comment": "x"}, "MissingRequiredParameter"),
    ({"Commands": [], "Comment": "x"}, "InvalidRequestBody"),
    ({"Commands": GET_EVIL, "Comment": "x"}, "InvalidRequestBody"),
    ({"Commands": [GET_EVIL], "Comment": 1}, "InvalidRequestBody"),
    ({"Commands": [GET_EVIL, command("RunScript", ScriptName="a.ps1")], "Comment": "x"}, "InvalidRequestBody"),
    ({"Commands": [command("RunScript", ScriptName="a.ps1"), command("PutFile", FileName="f")], "Comment": "x"},
     "InvalidRequestBody"),
    ({"Commands": [command("Run", ScriptName="a.ps1")], "Comment": "x"}, "InvalidRequestBody"),
    ({"Commands": [command("getfile", Path="C:\\x")], "Comment": "x"}, "InvalidRequestBody"),
    ({"Commands": [command("GetFile", path="C:\\x")], "Comment": "x"}, "InvalidRequestBody"),
    ({"Commands": [command("GetFile", FileName="x")], "Comment": "x"}, "InvalidRequestBody"),
    ({"Commands": [command("GetFile")], "Comment": "x"}, "MissingRequiredParameter"),
    ({"Commands": [command("GetFile", Path="  ")], "Comment": "x"}, "MissingRequiredParameter"),
    ({"Commands": [command("RunScript", Args="-x")], "Comment": "x"}, "MissingRequiredParameter"),
    ({"Commands": [{"Type": "GetFile", "params": [{"key": "Path", "value": "C:\\x"}]}], "Comment": "x"},
     "InvalidRequestBody"),
    ({"Commands": [{"type": "GetFile", "params": [{"key": "Path", "value": 5}]}], "Comment": "x"},
     "InvalidRequestBody"),
    ({"Commands": [{"type": "GetFile", "params": {"Path": "C:\\x"}}], "Comment": "x"}, "InvalidRequestBody"),
    ({"Commands": [{"type": "GetFile", "params": [{"key": "Path", "value": "a"}, {"key": "Path", "value": "b"}]}],
      "Comment": "x"}, "InvalidRequestBody"),
    ({"Commands": ["GetFile"], "Comment": "x"}, "InvalidRequestBody"),
    (["GetFile"], "InvalidRequestBody"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "code"), BAD_BODIES)
def test_invalid_bodies_are_400_and_create_nothing(mde, body, code):
    response = mde.post(f"/api/machines/{ONLINE}/runliveresponse", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert [a for a in mde.inspect("machineactions")["value"] if a["machineId"] == ONLINE] == []


def test_any_number_of_commands_in_the_documented_order(mde):
    commands = [
        command("PutFile", FileName="a.txt"),
        command("PutFile", FileName="b.txt"),
        command("RunScript", ScriptName="a.ps1"),
        command("RunScript", ScriptName="b.ps1", Args=""),
        GET_EVIL,
        GET_EVIL,
    ]
    assert len(_created(mde, ONLINE, commands)["commands"]) == 6


def test_disabled_feature_unknown_machine_and_unsupported_os(make_mde):
    raw = mde_scenario_raw()
    raw["defender"]["machines"].append({"id": "f" * 40, "computerDnsName": "phone", "osPlatform": "iOS"})
    mde = make_mde(raw)
    unknown = mde.run_live_response("e" * 40, [GET_EVIL])
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "ResourceNotFound"
    phone = mde.run_live_response("f" * 40, [GET_EVIL])
    assert phone.status_code == 400
    assert phone.json()["error"]["code"] == "OsPlatformNotSupported"
    raw["defender"]["live_response_enabled"] = False
    disabled = make_mde(raw).run_live_response(ONLINE, [GET_EVIL])
    assert disabled.status_code == 403
    assert disabled.json()["error"]["code"] == "DisabledFeature"


def test_one_active_action_per_machine(mde):
    busy = mde.run_live_response(BUSY, [GET_EVIL])
    assert busy.status_code == 400
    assert busy.json()["error"] == {
        "code": "ActiveRequestAlreadyExists",
        "message": "Action is already in progress",
        "target": busy.json()["error"]["target"],
    }
    first = _created(mde, ONLINE, [GET_EVIL])
    second = mde.run_live_response(ONLINE, [GET_EVIL])
    assert second.status_code == 400
    assert second.json()["error"]["code"] == "ActiveRequestAlreadyExists"
    mde.advance(1800)  # the busy machine's other session has ended, and ours has run
    assert mde.action(first["id"])["status"] == "Succeeded"
    assert mde.run_live_response(BUSY, [GET_EVIL]).status_code == 201
    assert mde.run_live_response(ONLINE, [GET_EVIL]).status_code == 201


def test_lifecycle_pending_in_progress_succeeded_with_command_times(mde):
    action = _created(mde, ONLINE, [GET_EVIL, GET_EVIL])
    action_id = action["id"]
    mde.advance(4.9)
    assert mde.action(action_id)["status"] == "Pending"
    mde.advance(0.2)  # pending_seconds (5) have passed: the first command runs
    running = mde.action(action_id)
    assert running["status"] == "InProgress"
    assert running["commands"][0]["startTime"] is not None
    assert running["commands"][0]["commandStatus"] == "Created"
    mde.advance(10)  # command_seconds: the first is done, the second runs
    running = mde.action(action_id)
    assert [c["commandStatus"] for c in running["commands"]] == ["Completed", "Created"]
    assert running["commands"][0]["endTime"] == running["commands"][1]["startTime"]
    mde.advance(10)
    done = mde.action(action_id)
    assert done["status"] == "Succeeded"
    assert [c["commandStatus"] for c in done["commands"]] == ["Completed", "Completed"]
    assert done["lastUpdateDateTimeUtc"] == done["commands"][1]["endTime"]
    assert gzip.decompress(_download(mde, action_id, 1)) == b"MZ evil payload"


def test_getfile_path_is_case_insensitive_and_missing_files_fail_the_command(mde):
    found = _created(mde, ONLINE, [command("GetFile", Path=EVIL_PATH.upper().replace("\\", "/"))])
    mde.advance(60)
    assert mde.action(found["id"])["status"] == "Succeeded"
    missing = _created(mde, ONLINE, [command("GetFile", Path="C:\\nope.exe"), GET_EVIL])
    mde.advance(60)
    failed = mde.action(missing["id"])
    assert failed["status"] == "Failed"
    first, second = failed["commands"]
    assert first["commandStatus"] == "Failed"
    assert "C:\\nope.exe" in first["errors"][0]
    assert second["commandStatus"] == "Created"  # a failing command stops the rest
    assert second["startTime"] is None


def test_offline_machine_waits_pending_until_online(mde):
    action = _created(mde, LATER, [command("GetFile", Path="D:\\data\\other.dll")])
    mde.advance(3600)  # the machine comes online now; pending_seconds to go
    assert mde.action(action["id"])["status"] == "Pending"
    mde.advance(5.1)
    assert mde.action(action["id"])["status"] == "InProgress"
    mde.advance(10)
    assert mde.action(action["id"])["status"] == "Succeeded"


def test_action_for_a_machine_that_never_comes_online_times_out(mde):
    action = _created(mde, NEVER, [GET_EVIL])
    mde.advance(3 * 24 * 3600 - 1)
    assert mde.action(action["id"])["status"] == "Pending"
    mde.advance(2)
    assert mde.action(action["id"])["status"] == "TimeOut"


def test_runscript_over_its_timeout_times_out(make_mde):
    raw = mde_scenario_raw()
    raw["defender"]["live_response"] = {"command_seconds": 700}
    mde = make_mde(raw)
    assert mde.upload("slow.ps1", b"Start-Sleep 700").status_code == 200
    action = _created(mde, ONLINE, [command("RunScript", ScriptName="slow.ps1"), GET_EVIL])
    mde.advance(5 + 599)
    assert mde.action(action["id"])["status"] == "InProgress"
    mde.advance(2)
    timed_out = mde.action(action["id"])
    assert timed_out["status"] == "TimeOut"
    assert timed_out["commands"][1]["commandStatus"] == "Created"


def test_getfile_duration_grows_with_size(make_mde):
    raw = mde_scenario_raw()
    raw["samples"]["big"] = {"generate": {"size": 1_000_000, "seed": 3}}
    raw["defender"]["machines"][0]["files"].append({"path": "C:\\big.bin", "sample": "big"})
    raw["defender"]["live_response"] = {"getfile_bytes_per_second": 100_000}
    mde = make_mde(raw, stepped=True)
    action = _created(mde, ONLINE, [command("GetFile", Path="C:\\big.bin")])
    mde.advance(5 + 10 + 9.9)
    assert mde.action(action["id"])["status"] == "InProgress"
    mde.advance(0.2)
    assert mde.action(action["id"])["status"] == "Succeeded"


def test_runscript_needs_the_script_in_the_library(mde):
    unknown = _created(mde, ONLINE, [command("RunScript", ScriptName="missing.ps1")])
    mde.advance(60)
    failed = mde.action(unknown["id"])
    assert failed["status"] == "Failed"
    assert "missing.ps1" in failed["commands"][0]["errors"][0]
    assert mde.upload("inventory.ps1", b"Get-ChildItem").status_code == 200
    known = _created(mde, ONLINE, [command("RunScript", ScriptName="inventory.ps1", Args="-Deep")])
    mde.advance(60)
    assert mde.action(known["id"])["status"] == "Succeeded"
    # Scripts other than the project's own cannot be emulated: they succeed with empty output.
    assert _script_result(mde, known["id"], 0) == {
        "script_name": "inventory.ps1",
        "exit_code": 0,
        "script_output": "",
        "script_errors": "",
    }


def test_unsigned_scripts_can_be_disabled(make_mde):
    raw = mde_scenario_raw()
    raw["defender"]["unsigned_scripts_allowed"] = False
    mde = make_mde(raw)
    mde.upload("inventory.ps1", b"Get-ChildItem")
    action = _created(mde, ONLINE, [command("RunScript", ScriptName="inventory.ps1")])
    mde.advance(60)
    failed = mde.action(action["id"])
    assert failed["status"] == "Failed"
    assert "unsigned" in failed["commands"][0]["errors"][0]


def test_putfile_drops_a_library_file_that_getfile_then_reads(mde):
    mde.upload("tool.exe", b"tool bytes")
    folder = r"C:\ProgramData\Microsoft\Windows Defender Advanced Threat Protection\Downloads"
    action = _created(
        mde, ONLINE, [command("PutFile", FileName="tool.exe"), command("GetFile", Path=f"{folder}\\tool.exe")]
    )
    mde.advance(60)
    assert mde.action(action["id"])["status"] == "Succeeded"
    assert gzip.decompress(_download(mde, action["id"], 1)) == b"tool bytes"
    no_result = mde.get(f"/api/machineactions/{action['id']}/GetLiveResponseResultDownloadLink(index=0)")
    assert no_result.status_code == 400
    missing = _created(mde, ONLINE, [command("PutFile", FileName="absent.exe")])
    mde.advance(60)
    assert mde.action(missing["id"])["status"] == "Failed"


def _collect_args(job_id: str, sha256: str) -> str:
    return contract.format_args(contract.CollectRequest("Collect", job_id, sha256=sha256))


def _files(mde: Any, machine_id: str) -> dict[str, int]:
    return {f["path"]: f["size"] for f in mde.inspect(f"machines/{machine_id}/files")["files"]}


def test_collection_script_runs_through_the_contract(mde):
    upload = mde.upload(contract.SCRIPT_NAME, contract.script_bytes(), HasParameters="true")
    assert upload.status_code == 200
    before = _files(mde, ONLINE)
    quarantined = mde.emulator.scenario.samples["quarantined"]
    job = "job-42"
    action = _created(
        mde,
        ONLINE,
        [
            command("RunScript", ScriptName=contract.SCRIPT_NAME, Args=_collect_args(job, quarantined.sha256)),
            command("GetFile", Path=contract.sample_path(job)),
        ],
    )
    mde.advance(60)
    assert mde.action(action["id"])["status"] == "Succeeded"
    result = _script_result(mde, action["id"], 0)
    assert result["script_name"] == contract.SCRIPT_NAME
    assert result["exit_code"] == contract.EXIT_FOUND
    outcome = contract.ScriptOutcome.from_script_output(result["script_output"])
    assert outcome.status == "found"
    assert outcome.path == contract.sample_path(job)
    fetched = contract.Refanger().feed(gzip.decompress(_download(mde, action["id"], 1)))
    assert hashlib.sha256(fetched).hexdigest() == quarantined.sha256
    assert _files(mde, ONLINE)[contract.sample_path(job)] == quarantined.size

    cleanup = contract.format_args(contract.CollectRequest("Cleanup", job))
    done = _created(mde, ONLINE, [command("RunScript", ScriptName=contract.SCRIPT_NAME, Args=cleanup)])
    mde.advance(60)
    assert mde.action(done["id"])["status"] == "Succeeded"
    assert _files(mde, ONLINE) == before  # nothing left behind


def test_collection_script_not_found_does_not_fail_the_command_but_getfile_does(mde):
    mde.upload(contract.SCRIPT_NAME, contract.script_bytes())
    action = _created(
        mde,
        ONLINE,
        [
            command("RunScript", ScriptName=contract.SCRIPT_NAME, Args=_collect_args("job-7", "0" * 64)),
            command("GetFile", Path=contract.sample_path("job-7")),
        ],
    )
    mde.advance(60)
    body = mde.action(action["id"])
    assert body["status"] == "Failed"
    assert [c["commandStatus"] for c in body["commands"]] == ["Completed", "Failed"]
    result = _script_result(mde, action["id"], 0)
    assert result["exit_code"] == contract.EXIT_NOT_FOUND
    assert contract.ScriptOutcome.from_script_output(result["script_output"]).status == "not_found"


def test_download_link_errors(mde):
    action = _created(mde, ONLINE, [GET_EVIL])
    base = f"/api/machineactions/{action['id']}/GetLiveResponseResultDownloadLink"
    not_yet = mde.get(f"{base}(index=0)")
    assert not_yet.status_code == 400
    assert "Created" in not_yet.json()["error"]["message"]
    mde.advance(60)
    assert mde.get(f"{base}(index=1)").status_code == 404
    assert mde.get(f"{base}(index=x)").status_code == 400
    assert mde.get(f"{base}(id=0)").status_code == 400
    assert mde.get(f"{base}%28index=0%29").status_code == 200
    unknown = mde.get(
        "/api/machineactions/00000000-0000-0000-0000-000000000000/GetLiveResponseResultDownloadLink(index=0)"
    )
    assert unknown.status_code == 404


def test_download_link_expires_and_is_tamper_proof(mde):
    action = _created(mde, ONLINE, [GET_EVIL])
    mde.advance(60)
    link = mde.get(f"/api/machineactions/{action['id']}/GetLiveResponseResultDownloadLink(index=0)").json()["value"]
    parts = urlsplit(link)
    query = dict(parse_qsl(parts.query))
    assert {"se", "sp", "sv", "sr", "sig"} <= set(query)

    def fetch(url: str, **kwargs) -> httpx.Response:
        return httpx.get(url, verify=mde.ssl, **kwargs)

    other_index = link.replace("/CustomPlaybookCommandOutput/0?", "/CustomPlaybookCommandOutput/1?")
    later_expiry = parts._replace(query=urlencode({**query, "se": "2999-01-01T00:00:00Z"})).geturl()
    for tampered in (other_index, later_expiry, link.replace("sig=", "sig=A")):
        refused = fetch(tampered)
        assert refused.status_code == 403
        assert b"<Code>AuthenticationFailed</Code>" in refused.content
    with_token = fetch(link, headers={"Authorization": f"Bearer {mde.token()}"})
    assert with_token.status_code == 403
    mde.advance(1799)
    assert fetch(link).status_code == 200
    mde.advance(2)
    expired = fetch(link)
    assert expired.status_code == 403
    assert b"Signature not valid in the specified time frame" in expired.content
    assert gzip.decompress(_download(mde, action["id"], 0)) == b"MZ evil payload"  # a fresh link works
    stats = mde.emulator.server.stats.snapshot()
    assert stats["liveresponse.download"]["statuses"]["403"] == 5
    assert stats["liveresponse.downloadLink"]["calls"] == 2


def test_getfile_refuses_an_empty_file(make_mde):
    """live-response-command-examples.md: getfile does not collect empty files."""
    raw = mde_scenario_raw()
    raw["samples"]["empty"] = {"text": ""}
    raw["defender"]["machines"][0]["files"].append({"path": "C:\\Users\\alice\\empty.txt", "sample": "empty"})
    mde = make_mde(raw)
    action = _created(mde, ONLINE, [command("GetFile", Path="C:\\Users\\alice\\empty.txt"), GET_EVIL])
    mde.advance(60)
    failed = mde.action(action["id"])
    assert failed["status"] == "Failed"
    assert [c["commandStatus"] for c in failed["commands"]] == ["Failed", "Created"]
    assert "empty" in failed["commands"][0]["errors"][0]
    link = mde.get(f"/api/machineactions/{action['id']}/GetLiveResponseResultDownloadLink(index=0)")
    assert link.status_code == 400


def test_a_portal_session_is_not_listed_and_only_shows_as_active_request_already_exists(mde):
    """A live response started from the portal's device page is not visible in machineactions
    (run-live-response.md, live-response.md): the busy machine lists nothing, yet refuses ours."""
    listed = mde.get("/api/machineactions", params={"$filter": f"machineId eq '{BUSY}'"})
    assert listed.status_code == 200, listed.text
    assert listed.json()["value"] == []
    assert all(a["machineId"] != BUSY for a in mde.get("/api/machineactions").json()["value"])
    busy = mde.run_live_response(BUSY, [GET_EVIL])
    assert (busy.status_code, busy.json()["error"]["code"]) == (400, "ActiveRequestAlreadyExists")
    mde.advance(1800)  # the portal session has ended
    assert mde.run_live_response(BUSY, [GET_EVIL]).status_code == 201
    [ours] = mde.get("/api/machineactions", params={"$filter": f"machineId eq '{BUSY}'"}).json()["value"]
    assert ours["requestor"] == CLIENT
