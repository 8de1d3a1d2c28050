"""The DefenderPort over the real client and the emulator, over real sockets: each wire model as
the core's type, and each Defender failure as the core's error."""

from __future__ import annotations

import hashlib
from contextlib import closing
from datetime import UTC, datetime

import httpx
import pytest

from joedefender.adapters.defender import (
    DefenderAdapter,
    DefenderError,
    MachineBusyError,
    NotFoundError,
    ThrottledError,
)
from joedefender.adapters.defender.models import MachineAction
from joedefender.adapters.defender.port import to_action
from joedefender.domain.alerts import Alert, Evidence
from joedefender.domain.errors import (
    Busy,
    Misconfigured,
    NotAllowed,
    NotFound,
    PortError,
    Rejected,
    Throttled,
    Transient,
)
from joedefender.domain.liveresponse import ActionStatus, Command, LiveResponseAction, Machine
from joedefender.domain.platforms import Platform
from joedefender.endpoint import contract
from joedefender.pipeline.ports import DefenderPort
from joedefender_emulators.runner import Emulators
from joedefender_emulators.scenario import ALL_PERMISSIONS

from .mde_fixtures import (
    BUSY_MACHINE,
    MACHINE,
    WINDOWS_PATH,
    add_fault,
    alert,
    client_for,
    count,
    emulators,
    wait_for,
)

SINCE = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
UNTIL = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
OFFLINE_MACHINE = "3c" * 20
URL = "http://phish.example/login"
DOWNLOADS = "C:\\Users\\alice\\Downloads"
SMALL_SAMPLE = b"MZ this is a small sample"  # the scenario's "small" sample
JOB_ID = "0123456789abcdef0123456789abcdef"


def _rich_alert() -> dict[str, object]:
    return alert(
        1,
        threatName="Trojan:Win32/Wacatac",
        evidence=[
            {"entityType": "File", "fileName": "invoice.exe", "filePath": DOWNLOADS, "$sample": "small"},
            {"entityType": "Url", "url": URL},
            {"entityType": "User", "accountName": "alice"},
        ],
        comments=[
            {"comment": "an analyst's note", "createdBy": "alice@contoso.com", "createdTime": "2024-05-01T10:02:00Z"},
            {"comment": None, "createdBy": "bob@contoso.com", "createdTime": "2024-05-01T10:03:00Z"},
        ],
    )


def _alerts() -> list[dict[str, object]]:
    return [_rich_alert(), *(alert(n) for n in range(2, 4))]


def _machines() -> list[dict[str, object]]:
    return [
        {"id": MACHINE, "computerDnsName": "pc1.contoso.com", "files": [{"path": WINDOWS_PATH, "sample": "small"}]},
        {"id": OFFLINE_MACHINE, "computerDnsName": "pc3.contoso.com", "online": False},
    ]


def adapter_on(
    emu: Emulators, *, secret: str | None = None, max_retry: int = 3, retry_timeout: float = 30.0
) -> closing[DefenderAdapter]:
    return closing(DefenderAdapter(client_for(emu, secret=secret, max_retry=max_retry, retry_timeout=retry_timeout)))


def _port(adapter: DefenderAdapter) -> DefenderPort:
    return adapter  # mypy: the adapter is the port


# --- models -----------------------------------------------------------------------------------------


def test_list_alerts_is_the_window_by_last_update_time_with_evidence() -> None:
    with emulators(alerts=_alerts()) as emu, adapter_on(emu) as adapter:
        listed = list(_port(adapter).list_alerts(SINCE, UNTIL))
        assert [a.id for a in listed] == [alert(n)["id"] for n in range(1, 4)]
        first = listed[0]
        assert isinstance(first, Alert)
        assert (first.title, first.severity, first.status, first.detection_source, first.machine_id) == (
            "Alert 1",
            "High",
            "New",
            "WindowsDefenderAv",
            MACHINE,
        )
        assert first.threat_name == "Trojan:Win32/Wacatac"
        assert first.last_update_time == datetime(2024, 5, 1, 10, 1, 0, 123456, tzinfo=UTC)
        assert [e.entity_type for e in first.evidence] == ["File", "Url", "User"]  # $expand=evidence
        assert first.comments == ("an analyst's note", "")
        assert list(adapter.list_alerts(UNTIL, datetime(2024, 5, 2, tzinfo=UTC))) == []


def test_get_alert_maps_evidence_and_comments() -> None:
    with emulators(alerts=_alerts()) as emu, adapter_on(emu) as adapter:
        got = adapter.get_alert(str(alert(1)["id"]))
        file, url, user = got.evidence
        assert isinstance(file, Evidence)
        assert (file.entity_type, file.file_name, file.file_path) == ("File", "invoice.exe", DOWNLOADS)
        assert file.sha256 == hashlib.sha256(SMALL_SAMPLE).hexdigest()
        assert file.path == DOWNLOADS + "\\invoice.exe"
        assert (url.entity_type, url.url, url.sha256) == ("Url", URL, None)
        assert user.entity_type == "User"
        assert got.comments == ("an analyst's note", "")


def test_machines_carry_their_platform_and_agent_version_from_the_wire() -> None:
    linux, mac, odd = "4a" * 20, "4b" * 20, "4c" * 20
    machines = [
        {
            "id": linux,
            "computerDnsName": "web1",
            "osPlatform": "RedHatEnterpriseLinux",
            "agentVersion": "101.23092.0012",
        },
        {"id": mac, "computerDnsName": "mac1", "osPlatform": "MacOs", "agentVersion": "101.43.84"},
        {"id": odd, "computerDnsName": "odd1", "osPlatform": "Plan9"},
    ]
    with emulators(machines=machines) as emu, adapter_on(emu) as adapter:
        got = {m.id: m for m in adapter.get_machines([linux, mac, odd])}
    assert got[linux] == Machine(
        linux, online=True, os_platform="RedHatEnterpriseLinux", agent_version="101.23092.0012"
    )
    assert got[linux].platform is Platform.LINUX
    assert got[mac].platform is Platform.MACOS
    assert got[mac].agent_version == "101.43.84"
    assert got[odd].platform is None
    decision = got[odd].platform_for("/srv/www/x.php")
    assert decision.platform is Platform.LINUX
    assert decision.rule == "posix path"


def test_add_comment_returns_nothing_and_the_comment_is_read_back() -> None:
    with emulators(alerts=_alerts()) as emu, adapter_on(emu) as adapter:
        alert_id = str(alert(2)["id"])
        assert adapter.add_comment(alert_id, "Joe Sandbox: MALICIOUS") is None  # type: ignore[func-returns-value]
        assert adapter.get_alert(alert_id).comments == ("Joe Sandbox: MALICIOUS",)


def test_machines_are_online_when_defender_reports_them_active() -> None:
    with emulators(machines=_machines()) as emu, adapter_on(emu) as adapter:
        assert adapter.get_machine(MACHINE) == Machine(MACHINE, online=True, os_platform="Windows11")
        assert adapter.get_machine(OFFLINE_MACHINE) == Machine(OFFLINE_MACHINE, online=False, os_platform="Windows11")
        unknown = "0d" * 20
        assert sorted(adapter.get_machines([MACHINE, OFFLINE_MACHINE, unknown]), key=lambda m: m.online) == [
            Machine(OFFLINE_MACHINE, online=False, os_platform="Windows11"),
            Machine(MACHINE, online=True, os_platform="Windows11"),
        ]
        assert adapter.get_machines([unknown]) == []  # Defender's 404 for "no machines": none


def test_alerts_are_read_many_per_call_and_commented_in_one_batch() -> None:
    many = [alert(n, minute=n % 60) for n in range(1, 121)]
    with emulators(alerts=many) as emu, adapter_on(emu) as adapter:
        ids = [str(a["id"]) for a in many]
        got = adapter.get_alerts([*ids, "da000000000000000000_404"])
        assert sorted(a.id for a in got) == sorted(ids)  # the unknown id is simply absent
        assert all(a.evidence for a in got)
        listed = _calls(emu, "alerts.list")
        assert 2 <= listed <= 4  # as many ids per call as the URL allows, not one GET each
        adapter.comment_alerts(ids[:3], "Joe Sandbox: MALICIOUS")
        assert [a.comments[-1] for a in adapter.get_alerts(ids[:3])] == ["Joe Sandbox: MALICIOUS"] * 3
        assert _calls(emu, "alerts.batchUpdate") == 1
        assert _calls(emu, "alerts.get") == 0


def _calls(emu: Emulators, route: str) -> int:
    with httpx.Client(verify=emu.certificates.client_context()) as http:
        return int(http.get(f"{emu.defender.url}/_emulator/calls").json().get(route, {}).get("calls", 0))


def test_live_response_from_start_to_results() -> None:
    with emulators() as emu, adapter_on(emu) as adapter:
        adapter.ensure_library_file(
            contract.SCRIPT_NAME, contract.script_bytes(), description="joedefender", parameters_description="-Mode"
        )
        cleanup = contract.format_args(contract.CollectRequest("Cleanup", JOB_ID))
        action = adapter.run_live_response(
            MACHINE,
            [Command.run_script(contract.SCRIPT_NAME, cleanup), Command.get_file(WINDOWS_PATH)],
            "joedefender nonce-1234",
        )
        assert isinstance(action, LiveResponseAction)
        assert (action.status, action.comment, action.errors) == (ActionStatus.PENDING, "joedefender nonce-1234", ())
        assert action.status.running
        assert [a.id for a in adapter.list_actions(MACHINE)] == [action.id]
        wait_for(
            lambda: adapter.get_action(action.id).status is ActionStatus.SUCCEEDED,
            step=lambda: emu.clock.advance(30),
        )
        assert '"cleaned"' in adapter.script_output(action.id, 0)
        with adapter.stream_file(action.id, 1, max_bytes=1 << 20) as chunks:
            assert b"".join(chunks) == SMALL_SAMPLE


def test_a_failed_action_carries_its_commands_errors() -> None:
    with emulators() as emu, adapter_on(emu) as adapter:
        action = adapter.run_live_response(
            MACHINE, [Command.get_file("C:\\nowhere\\a.exe"), Command.get_file(WINDOWS_PATH)], "a missing file"
        )
        wait_for(lambda: not adapter.get_action(action.id).status.running, step=lambda: emu.clock.advance(30))
        failed = adapter.get_action(action.id)
        assert failed.status is ActionStatus.FAILED
        assert failed.errors == ("File 'C:\\nowhere\\a.exe' was not found on the device.",)
        assert failed.describe_failure() == failed.errors[0]
        assert [a.errors for a in adapter.list_actions(MACHINE)] == [failed.errors]


def test_errors_are_every_commands_in_order_and_statuses_are_read_without_regard_to_case() -> None:
    wire = MachineAction.model_validate(
        {
            "id": "a1",
            "status": "timeout",
            "requestorComment": None,
            "commands": [
                {"index": 0, "commandStatus": "Failed", "errors": ["first", "second"]},
                {"index": 1, "commandStatus": "Completed", "errors": None},
                {"index": 2, "commandStatus": "Failed", "errors": ["third"]},
            ],
        }
    )
    assert to_action(wire) == LiveResponseAction("a1", ActionStatus.TIMEOUT, "", ("first", "second", "third"))
    with pytest.raises(Transient, match="unknown status 'Exploded'"):
        to_action(wire.model_copy(update={"status": "Exploded"}))


def test_cancel_action_returns_nothing_and_the_action_is_cancelled() -> None:
    with emulators() as emu, adapter_on(emu) as adapter:
        action = adapter.run_live_response(MACHINE, [Command.get_file(WINDOWS_PATH)], "to be cancelled")
        assert adapter.cancel_action(action.id, "no longer needed") is None  # type: ignore[func-returns-value]
        assert adapter.get_action(action.id).status is ActionStatus.CANCELLED


# --- errors -----------------------------------------------------------------------------------------


def _raised(call: object) -> PortError:
    assert callable(call)
    with pytest.raises(PortError) as caught:
        call()
    error = caught.value
    assert error.service == "defender"
    assert isinstance(error.__cause__, DefenderError)
    assert error.message == error.__cause__.message  # Defender's own text, for the job history
    assert str(error) == str(error.__cause__)  # the operation, status, code and target, for the log
    return error


def test_429_with_a_retry_after_is_throttled_with_the_hint() -> None:
    with emulators() as emu, adapter_on(emu, retry_timeout=5.0) as adapter:
        add_fault(emu, path=r"^/api/alerts/", status=429, retry_after=60)
        error = _raised(lambda: adapter.get_alert(str(alert(1)["id"])))
        assert isinstance(error, Throttled)
        assert isinstance(error.__cause__, ThrottledError)
        assert error.retry_after == 60
        assert not error.maybe_applied


def test_404_is_not_found() -> None:
    with emulators() as emu, adapter_on(emu) as adapter:
        error = _raised(lambda: adapter.get_machine("f" * 40))
        assert type(error) is NotFound
        assert isinstance(error.__cause__, NotFoundError)
        assert "was not found" in error.message
        assert not error.message.startswith("get_machine")
        assert type(_raised(lambda: adapter.get_action("no-such-action"))) is NotFound


def test_disabled_live_response_is_not_allowed() -> None:
    with emulators(live_response_enabled=False) as emu, adapter_on(emu) as adapter:
        error = _raised(lambda: adapter.run_live_response(MACHINE, [Command.get_file(WINDOWS_PATH)], "c"))
        assert type(error) is NotAllowed
        assert error.message == error.__cause__.message  # type: ignore[union-attr]


def test_a_missing_permission_is_not_allowed() -> None:
    granted = [p for p in ALL_PERMISSIONS if p != "Machine.LiveResponse"]
    with emulators(permissions=granted) as emu, adapter_on(emu) as adapter:
        error = _raised(lambda: adapter.run_live_response(MACHINE, [Command.get_file(WINDOWS_PATH)], "c"))
        assert type(error) is NotAllowed
        assert "Machine.LiveResponse" in error.message


def test_active_request_already_exists_is_busy() -> None:
    with emulators() as emu, adapter_on(emu) as adapter:
        error = _raised(lambda: adapter.run_live_response(BUSY_MACHINE, [Command.get_file(WINDOWS_PATH)], "c"))
        assert type(error) is Busy
        assert isinstance(error.__cause__, MachineBusyError)
        assert count(emu, "liveresponse.run") == 1


def test_a_dropped_live_response_request_may_have_been_applied() -> None:
    with emulators() as emu, adapter_on(emu) as adapter:
        add_fault(emu, method="POST", path=r"/runliveresponse$", drop=True, times=1)
        error = _raised(lambda: adapter.run_live_response(MACHINE, [Command.get_file(WINDOWS_PATH)], "c"))
        assert type(error) is Transient
        assert error.maybe_applied
        assert count(emu, "liveresponse.run") == 1  # not repeated: look at the machine's actions first


def test_a_dropped_read_outlasting_the_retries_is_transient_and_not_applied() -> None:
    with emulators() as emu, adapter_on(emu, max_retry=1) as adapter:
        add_fault(emu, path=r"^/api/machines/", drop=True)
        error = _raised(lambda: adapter.get_machine(MACHINE))
        assert type(error) is Transient
        assert not error.maybe_applied


def test_5xx_beyond_the_retries_is_transient() -> None:
    with emulators() as emu, adapter_on(emu, max_retry=1) as adapter:
        add_fault(emu, path=r"^/api/machineactions", status=503)
        error = _raised(lambda: adapter.list_actions(MACHINE))
        assert type(error) is Transient


def test_a_bad_request_is_rejected() -> None:
    with emulators() as emu, adapter_on(emu) as adapter:
        add_fault(emu, method="PATCH", path=r"^/api/alerts/", status=400, code="InvalidRequestBody", message="bad body")
        error = _raised(lambda: adapter.add_comment(str(alert(1)["id"]), "x"))
        assert type(error) is Rejected
        assert error.message == "bad body"


def test_a_wrong_client_secret_is_misconfigured() -> None:
    with emulators() as emu, adapter_on(emu, secret="not-the-secret") as adapter:
        error = _raised(lambda: adapter.get_alert(str(alert(1)["id"])))
        assert type(error) is Misconfigured
        assert "not-the-secret" not in str(error) + repr(error)


def test_a_file_larger_than_the_cap_is_rejected_inside_the_block() -> None:
    with emulators() as emu, adapter_on(emu) as adapter:
        action = adapter.run_live_response(MACHINE, [Command.get_file(WINDOWS_PATH)], "c")
        wait_for(
            lambda: adapter.get_action(action.id).status is ActionStatus.SUCCEEDED,
            step=lambda: emu.clock.advance(30),
        )
        with adapter.stream_file(action.id, 0, max_bytes=10) as chunks:
            with pytest.raises(Rejected) as caught:
                b"".join(chunks)
            assert "larger than the cap" in caught.value.message
        with pytest.raises(NotFound), adapter.stream_file(action.id, 5, max_bytes=10):
            pass  # pragma: no cover - the link for a command that does not exist is refused first
