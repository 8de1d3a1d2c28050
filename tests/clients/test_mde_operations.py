"""The MDE client's operations against the emulator: paging, updates, live response, library,
indicators, and every error type raised by the condition that should raise it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from joedefender.adapters.defender import (
    BadRequestError,
    DownloadTooLargeError,
    FeatureDisabledError,
    ForbiddenError,
    IndicatorSpec,
    LiveResponseCommand,
    MachineActionStatus,
    MachineBusyError,
    NotFoundError,
)
from joedefender_emulators.scenario import ALL_PERMISSIONS

from .mde_fixtures import (
    BUSY_MACHINE,
    MACHINE,
    SECRET,
    WINDOWS_PATH,
    add_fault,
    alert,
    client_for,
    count,
    emulators,
    status_count,
    wait_for,
)

SINCE = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
UNTIL = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)


def _window_alerts() -> list[dict[str, object]]:
    inside = [alert(n, status="New" if n % 3 else "InProgress") for n in range(1, 8)]
    resolved = alert(8, status="Resolved")
    before = {**alert(9), "lastUpdateTime": "2024-05-01T09:59:59.9999999Z"}
    after = {**alert(10), "lastUpdateTime": "2024-05-01T11:00:00Z"}  # the end is exclusive
    return [*inside, resolved, before, after]


def test_list_alerts_pages_through_the_window_with_filters():
    with emulators(alerts=_window_alerts()) as emu, client_for(emu) as client:
        listed = list(client.list_alerts(SINCE, UNTIL, statuses=("New", "InProgress"), page_size=3))
        assert [a.id for a in listed] == [alert(n)["id"] for n in range(1, 8)]
        assert count(emu, "alerts.list") == 3  # 3 + 3 + 1
        assert all(a.evidence and a.evidence[0].sha256 for a in listed)
        assert listed[0].last_update_time == datetime(2024, 5, 1, 10, 1, 0, 123456, tzinfo=UTC)

        everything = list(client.list_alerts(SINCE, UNTIL, expand_evidence=False, page_size=1000))
        assert {a.id for a in everything} == {alert(n)["id"] for n in range(1, 9)}
        assert all(a.evidence == [] for a in everything)

        high_av = client.list_alerts(
            SINCE, UNTIL, severities=["High"], detection_sources=["WindowsDefenderAv"], statuses=["Resolved"]
        )
        assert [a.id for a in high_av] == [alert(8)["id"]]


def test_update_alert_and_comment():
    alert_id = alert(1)["id"]
    with emulators() as emu, client_for(emu) as client:
        updated = client.update_alert(
            alert_id, status="Resolved", classification="TruePositive", determination="Malware"
        )
        assert (updated.status, updated.classification, updated.determination) == (
            "Resolved",
            "TruePositive",
            "Malware",
        )
        commented = client.add_comment(alert_id, "Joe Sandbox: it's malicious")
        assert [c.comment for c in commented.comments] == ["Joe Sandbox: it's malicious"]
        assert client.get_alert(alert_id).comments[0].created_time is not None
        with pytest.raises(ValueError, match="at least one change"):
            client.update_alert(alert_id)


def test_machine_and_machine_actions():
    with emulators() as emu, client_for(emu) as client:
        machine = client.get_machine(MACHINE)
        assert machine.computer_dns_name == "pc1.contoso.com"
        action = client.run_live_response(
            MACHINE, [LiveResponseCommand.get_file(WINDOWS_PATH)], "joedefender: collect invoice.exe"
        )
        assert action.status == MachineActionStatus.PENDING
        assert action.commands[0].command == LiveResponseCommand.get_file(WINDOWS_PATH)
        listed = client.list_machine_actions(machine_id=MACHINE)
        assert [a.id for a in listed] == [action.id]
        assert client.list_machine_actions(machine_id=MACHINE, status="Succeeded") == []
        # The busy machine's session was started from the portal: machineactions does not list it.
        assert client.list_machine_actions(machine_id=BUSY_MACHINE, type="LiveResponse") == []
        assert client.get_machine_action(action.id).id == action.id
        cancelled = client.cancel_machine_action(action.id, "no longer needed")
        assert cancelled.status == MachineActionStatus.CANCELLED
        assert cancelled.is_final


def test_get_file_and_run_script_results_stream_back():
    with emulators() as emu, client_for(emu) as client:
        client.ensure_library_file("hello.ps1", b"Write-Output 'hi'", description="test script")
        action = client.run_live_response(
            MACHINE,
            [LiveResponseCommand.run_script("hello.ps1", "-Name x"), LiveResponseCommand.get_file(WINDOWS_PATH)],
            "joedefender test",
        )
        wait_for(
            lambda: client.get_machine_action(action.id).status == MachineActionStatus.SUCCEEDED,
            step=lambda: emu.clock.advance(30),
        )
        script = client.get_script_result(action.id, 0)
        assert script.script_name == "hello.ps1"
        assert script.exit_code == 0
        with client.stream_result(action.id, 1, gunzip=True, max_bytes=1 << 20) as chunks:
            assert b"".join(chunks) == b"MZ this is a small sample"
        with (
            pytest.raises(DownloadTooLargeError),
            client.stream_result(action.id, 1, gunzip=True, max_bytes=10) as chunks,
        ):
            b"".join(chunks)
        with pytest.raises(NotFoundError):
            client.get_result_download_link(action.id, 5)


def test_a_refused_or_failing_result_link_is_fetched_again():
    with emulators() as emu, client_for(emu) as client:
        action = client.run_live_response(MACHINE, [LiveResponseCommand.get_file(WINDOWS_PATH)], "c")
        wait_for(
            lambda: client.get_machine_action(action.id).status == MachineActionStatus.SUCCEEDED,
            step=lambda: emu.clock.advance(30),
        )
        add_fault(emu, path="^/investigation-actions-data/", status=403, code="AuthenticationFailed", times=1)
        add_fault(emu, path="^/investigation-actions-data/", status=503, times=1)
        with client.stream_result(action.id, 0, gunzip=True, max_bytes=1 << 20) as chunks:
            assert b"".join(chunks) == b"MZ this is a small sample"
        assert count(emu, "liveresponse.downloadLink") == 2  # a fresh link after the 403
        assert status_count(emu, "liveresponse.download", 403) == 1
        assert status_count(emu, "liveresponse.download", 503) == 1
        assert status_count(emu, "liveresponse.download", 200) == 1


def test_the_library_script_is_uploaded_only_when_it_changed():
    with emulators() as emu, client_for(emu) as client:
        first = client.ensure_library_file(
            "collect.ps1", b"# v1", description="joedefender", parameters_description="-Sha256 <hash>"
        )
        assert first.sha256 == hashlib.sha256(b"# v1").hexdigest()
        assert first.has_parameters
        again = client.ensure_library_file("collect.ps1", b"# v1", description="joedefender")
        assert again.sha256 == first.sha256
        assert count(emu, "libraryfiles.upload") == 1
        changed = client.ensure_library_file("collect.ps1", b"# v2", description="joedefender")
        assert changed.sha256 == hashlib.sha256(b"# v2").hexdigest()
        assert count(emu, "libraryfiles.upload") == 2
        assert [f.file_name for f in client.list_library_files()] == ["collect.ps1"]
        client.delete_library_file("collect.ps1")
        assert client.list_library_files() == []
        with pytest.raises(NotFoundError):
            client.delete_library_file("collect.ps1")


def _spec(number: int) -> IndicatorSpec:
    return IndicatorSpec(
        indicator_value=hashlib.sha256(str(number).encode()).hexdigest(),
        indicator_type="FileSha256",
        action="AlertAndBlock",
        title="Joe Sandbox: malicious",
        description="Submitted by joedefender's test",
        severity="High",
        expiration_time=datetime.now(UTC) + timedelta(days=30),
        generate_alert=True,
    )


def test_indicators_import_in_batches_list_and_delete():
    specs = [_spec(n) for n in range(501)]
    with emulators() as emu, client_for(emu) as client:
        results = client.import_indicators(specs)
        assert len(results) == 501
        assert not any(r.is_failed for r in results)
        assert count(emu, "indicators.import") == 2  # 500 + 1
        found = client.list_indicators(value=specs[7].indicator_value)
        assert [i.indicator_value for i in found] == [specs[7].indicator_value]
        assert found[0].title == "Joe Sandbox: malicious"
        mine = client.list_indicators(type="FileSha256", title="Joe Sandbox: malicious", page_size=200)
        assert len(mine) == 501
        assert count(emu, "indicators.list") == 1 + 3  # the lookup, then pages of 200, 200, 101
        client.delete_indicator(found[0].id)
        assert client.list_indicators(value=specs[7].indicator_value) == []
        remaining = [r.id for r in results if r.id is not None and r.id != found[0].id]
        client.batch_delete_indicators(remaining)
        assert count(emu, "indicators.batchDelete") == 1
        assert client.list_indicators(title="Joe Sandbox: malicious") == []
        with pytest.raises(NotFoundError):
            client.delete_indicator(found[0].id)


def test_odata_values_with_quotes_are_escaped():
    quoted = _spec(1).model_copy(update={"title": "Joe's verdict"})
    with emulators() as emu, client_for(emu) as client:
        client.import_indicators([quoted, _spec(2)])
        assert [i.title for i in client.list_indicators(title="Joe's verdict")] == ["Joe's verdict"]
        # unescaped, these would select everything
        assert client.list_indicators(title="x' or title ne 'y") == []
        action = client.run_live_response(MACHINE, [LiveResponseCommand.get_file(WINDOWS_PATH)], "c")
        assert client.list_machine_actions(machine_id="x' or machineId ne 'y") == []
        assert [a.id for a in client.list_machine_actions()] == [action.id]


# --- errors ----------------------------------------------------------------------------------------


def test_not_found_carries_code_message_and_target_and_is_not_retried():
    with emulators() as emu, client_for(emu) as client:
        with pytest.raises(NotFoundError) as caught:
            client.get_alert("da000000000000000000_0")
        error = caught.value
        assert (error.status, error.code) == (404, "ResourceNotFound")
        assert "was not found" in error.message
        assert error.target
        assert count(emu, "alerts.get") == 1
        with pytest.raises(NotFoundError):
            client.get_machine("f" * 40)


def test_forbidden_names_the_missing_permission():
    granted = [p for p in ALL_PERMISSIONS if p != "Machine.LiveResponse"]
    with emulators(permissions=granted) as emu, client_for(emu) as client:
        with pytest.raises(ForbiddenError) as caught:
            client.run_live_response(MACHINE, [LiveResponseCommand.get_file(WINDOWS_PATH)], "c")
        assert caught.value.status == 403
        assert caught.value.missing_permission == "Machine.LiveResponse"
        assert count(emu, "liveresponse.run") == 1


def test_disabled_live_response_is_feature_disabled():
    with emulators(live_response_enabled=False) as emu, client_for(emu) as client:
        with pytest.raises(FeatureDisabledError) as caught:
            client.run_live_response(MACHINE, [LiveResponseCommand.get_file(WINDOWS_PATH)], "c")
        assert caught.value.code == "DisabledFeature"


def test_a_busy_machine_is_machine_busy():
    with emulators() as emu, client_for(emu) as client:
        with pytest.raises(MachineBusyError) as caught:
            client.run_live_response(BUSY_MACHINE, [LiveResponseCommand.get_file(WINDOWS_PATH)], "c")
        assert caught.value.code == "ActiveRequestAlreadyExists"
        assert isinstance(caught.value, BadRequestError)
        assert count(emu, "liveresponse.run") == 1


def test_other_400s_are_bad_requests_and_not_retried():
    with emulators() as emu, client_for(emu) as client:
        with pytest.raises(BadRequestError) as caught:
            client.update_alert(alert(1)["id"], status="Bogus")
        assert not isinstance(caught.value, MachineBusyError)
        assert caught.value.code == "InvalidRequestBody"
        with pytest.raises(BadRequestError) as odata:
            list(client.list_alerts(SINCE, UNTIL, time_field="noSuchField"))
        assert odata.value.code == "ODataError"
        assert count(emu, "alerts.update") == 1
        assert count(emu, "alerts.list") == 1
        assert SECRET not in repr(caught.value)
