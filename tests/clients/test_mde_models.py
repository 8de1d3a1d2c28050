"""The typed models and the pure helpers: documented inconsistencies, nulls, gzip streaming, errors."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from pydantic import ValidationError

from joedefender.adapters._microsoft.calls import format_time
from joedefender.adapters._microsoft.errors import (
    BadRequestError,
    DefenderServerError,
    FeatureDisabledError,
    NotFoundError,
    ThrottledError,
    error_for,
)
from joedefender.adapters._microsoft.transport import raw_chunks, redact_signature, retry_after_seconds
from joedefender.adapters.defender import (
    Alert,
    DefenderTransportError,
    DownloadTooLargeError,
    ForbiddenError,
    Indicator,
    IndicatorSpec,
    InvalidResponseError,
    LiveResponseCommand,
    MachineAction,
    MachineBusyError,
    ScriptResult,
    odata_string,
)
from joedefender.adapters.defender._stream import capped, gunzipped


def test_alert_tolerates_nulls_unknown_fields_and_both_comment_time_names():
    alert = Alert.model_validate(
        {
            "id": "da637472900382838869_1364969609",
            "incidentId": 1126093,
            "asssignedTo": "secop@contoso.com",
            "lastUpdateTime": "2021-01-26T20:33:57.7220239Z",
            "mitreTechniques": None,
            "evidence": None,
            "comments": [
                {"comment": "a", "createdBy": "x", "createdTime": "2021-01-26T01:00:37.8404534Z"},
                {"comment": "b", "createdBy": "y", "createTime": "2021-01-27T01:00:37Z"},
            ],
            "someFieldDefenderAddsLater": {"nested": True},
        }
    )
    assert alert.assigned_to == "secop@contoso.com"
    assert alert.mitre_techniques == []
    assert alert.evidence == []
    assert alert.last_update_time == datetime(2021, 1, 26, 20, 33, 57, 722023, tzinfo=UTC)
    assert [c.created_time for c in alert.comments] == [
        datetime(2021, 1, 26, 1, 0, 37, 840453, tzinfo=UTC),
        datetime(2021, 1, 27, 1, 0, 37, tzinfo=UTC),
    ]


def test_naive_timestamps_are_utc():
    alert = Alert.model_validate({"id": "a", "alertCreationTime": "2021-01-26T20:33:57"})
    assert alert.alert_creation_time == datetime(2021, 1, 26, 20, 33, 57, tzinfo=UTC)


def test_machine_action_reads_both_last_update_names_and_commands():
    common = {
        "id": "7bd1c6c8-9e15-4ad0-8fc3-67b3cc0d8a54",
        "status": "Succeeded",
        "externalID": "ext",
        "errorHResult": 0,
        "commands": [
            {
                "index": 0,
                "commandStatus": "Completed",
                "errors": None,
                "command": {"type": "GetFile", "params": [{"key": "Path", "value": "C:\\x.exe"}]},
            }
        ],
    }
    listed = MachineAction.model_validate({**common, "lastUpdateTimeUtc": "2021-01-01T00:00:00Z"})
    entity = MachineAction.model_validate({**common, "lastUpdateDateTimeUtc": "2021-01-01T00:00:00Z"})
    assert listed.last_update_date_time_utc == entity.last_update_date_time_utc is not None
    assert listed.external_id == "ext"
    assert listed.is_final
    command = listed.commands[0].command
    assert command is not None
    assert command.param("path") == "C:\\x.exe"
    assert listed.commands[0].errors == []
    assert not MachineAction.model_validate({"id": "x", "status": "Pending"}).is_final


def test_live_response_command_helpers_build_the_documented_body():
    assert LiveResponseCommand.get_file("C:\\a b\\x.exe").to_api() == {
        "type": "GetFile",
        "params": [{"key": "Path", "value": "C:\\a b\\x.exe"}],
    }
    assert LiveResponseCommand.run_script("s.ps1", "-x 1").to_api() == {
        "type": "RunScript",
        "params": [{"key": "ScriptName", "value": "s.ps1"}, {"key": "Args", "value": "-x 1"}],
    }
    assert LiveResponseCommand.put_file("f.bin").to_api()["params"] == [{"key": "FileName", "value": "f.bin"}]


def test_indicator_ids_and_group_names_in_either_shape():
    numeric = Indicator.model_validate({"id": 995, "rbacGroupNames": "Group A, Group B", "rbacGroupIds": [3]})
    assert numeric.id == "995"
    assert numeric.rbac_group_names == ["Group A", "Group B"]
    assert numeric.rbac_group_ids == ["3"]
    assert Indicator.model_validate({"id": "1", "rbacGroupNames": ["A"]}).rbac_group_names == ["A"]


def test_indicator_spec_body_and_audit_rule():
    spec = IndicatorSpec(
        indicator_value="a" * 64,
        indicator_type="FileSha256",
        action="AlertAndBlock",
        title="t",
        description="d",
        expiration_time=datetime(2030, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1))),
        generate_alert=True,
    )
    assert spec.to_api() == {
        "indicatorValue": "a" * 64,
        "indicatorType": "FileSha256",
        "action": "AlertAndBlock",
        "title": "t",
        "description": "d",
        "expirationTime": "2030-01-01T00:00:00Z",
        "generateAlert": True,
    }
    with pytest.raises(ValidationError, match="generate_alert"):
        IndicatorSpec(indicator_value="1.2.3.4", indicator_type="IpAddress", action="Audit", title="t", description="d")


def test_script_result_reads_the_snake_case_json():
    result = ScriptResult.model_validate_json(
        '{"script_name": "s.ps1", "exit_code": 0, "script_output": "ok", "script_errors": null}'
    )
    assert (result.script_name, result.exit_code, result.script_output, result.script_errors) == (
        "s.ps1",
        0,
        "ok",
        "",
    )


def test_format_time_is_utc_with_z():
    assert format_time(datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)) == "2024-05-01T12:00:00.5Z"
    assert format_time(datetime(2024, 5, 1, 12, 0)) == "2024-05-01T12:00:00Z"


def test_odata_strings_double_their_quotes():
    assert odata_string("O'Brien's") == "'O''Brien''s'"


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "ActiveRequestAlreadyExists", MachineBusyError),
        (400, "InvalidRequestBody", BadRequestError),
        (403, "DisabledFeature", FeatureDisabledError),
        (403, "Forbidden", ForbiddenError),
        (404, "ResourceNotFound", NotFoundError),
        (429, "TooManyRequests", ThrottledError),
        (503, None, DefenderServerError),
    ],
)
def test_error_for_picks_the_type(status, code, expected):
    error = error_for(status, code, "m", target="t-1", operation="op")
    assert type(error) is expected
    assert (error.status, error.code, error.target) == (status, code, "t-1")
    assert "t-1" in str(error)


def test_forbidden_names_the_permissions_the_message_names():
    error = error_for(
        403, "Forbidden", "The application lacks: one of Alert.Read.All, Alert.ReadWrite.All. Grant it.", target=None
    )
    assert isinstance(error, ForbiddenError)
    assert error.missing_permission == "Alert.Read.All"
    assert error.permissions == ("Alert.Read.All", "Alert.ReadWrite.All")
    assert error_for(403, "Forbidden", "Access denied.").missing_permission is None  # type: ignore[attr-defined]


def test_retry_after_reads_seconds_and_dates():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("Mon, 01 Jan 2024 00:00:30 GMT", now=lambda: now) == 30.0


def test_signatures_are_redacted():
    url = "https://x.blob/path?se=2021&sp=r&sig=abc%2Bdef%3D&sr=b"
    assert redact_signature(url) == "https://x.blob/path?se=2021&sp=r&sig=***&sr=b"


# --- streaming --------------------------------------------------------------------------------------


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_gunzip_streams_in_bounded_chunks_across_members():
    first, second = b"A" * 300_000, bytes(range(256)) * 1000
    compressed = gzip.compress(first) + gzip.compress(second)
    out = list(gunzipped(_pieces(compressed, 1000), max_bytes=10**7, operation="t"))
    assert b"".join(out) == first + second
    assert max(len(chunk) for chunk in out) <= 1 << 16


def test_gunzip_cap_stops_a_bomb_before_it_inflates():
    bomb = gzip.compress(b"\0" * (50 << 20))  # 50 MB of zeros in ~50 KB
    produced: list[int] = []

    def drain() -> None:
        for chunk in gunzipped([bomb], max_bytes=1 << 20, operation="t"):
            produced.append(len(chunk))

    with pytest.raises(DownloadTooLargeError):
        drain()
    assert sum(produced) <= 1 << 20
    assert max(produced) <= 1 << 16


def test_gunzip_rejects_truncated_and_non_gzip_data():
    data = gzip.compress(b"x" * 100_000 + bytes(range(256)) * 100)
    with pytest.raises(InvalidResponseError, match="truncated"):
        list(gunzipped([data[: len(data) // 2]], max_bytes=10**7, operation="t"))
    with pytest.raises(InvalidResponseError, match="not valid gzip"):
        list(gunzipped([b"plain text, not gzip"], max_bytes=10**7, operation="t"))
    raw_deflate = zlib.compress(b"x")
    with pytest.raises(InvalidResponseError):
        list(gunzipped([raw_deflate], max_bytes=10**7, operation="t"))


class _BreakingStream(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b"first part"
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def test_a_download_that_breaks_off_is_a_transport_error():
    response = httpx.Response(200, stream=_BreakingStream())
    received: list[bytes] = []

    def drain() -> None:
        for chunk in raw_chunks(response, "stream_result", 5):
            received.append(chunk)

    with pytest.raises(DefenderTransportError, match="broke off"):
        drain()
    assert received == [b"first", b" part"]  # what arrived was passed on before the error


def test_capped_passes_up_to_the_cap_and_no_further():
    assert b"".join(capped([b"ab", b"cd"], max_bytes=4, operation="t")) == b"abcd"
    with pytest.raises(DownloadTooLargeError):
        list(capped([b"ab", b"cde"], max_bytes=4, operation="t"))
