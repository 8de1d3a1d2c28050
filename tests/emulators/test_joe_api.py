"""The Joe emulator's server and account endpoints, keys, parameter checks and error envelope,
seen through the official jbxapi client (and raw requests where jbxapi cannot misbehave)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import jbxapi
import pytest
import requests

from joedefender_emulators.joe import JoeEmulator
from joedefender_emulators.joe.params import SUBMISSION_BOOL_PARAMS, SUBMISSION_VALUE_PARAMS

from .joe_fixtures import (
    API_KEY,
    calls,
    client,
    error_of,
    inspect,
    raw_post,
    running_joe,
    scenario_raw,
)


@pytest.fixture(scope="module")
def emulator() -> Iterator[JoeEmulator]:
    with running_joe() as emulator:
        yield emulator


def test_server_endpoints_answer_in_the_data_envelope(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    assert joe.server_online() == {"online": True}
    assert isinstance(joe.server_info()["queuesize"], int)
    systems = {s["name"]: s for s in joe.server_systems()}
    # the scenario's systems are offered next to the built-in ones
    assert {"w10x64_22h2", "w11x64_22h2", "w7x64_sp1_office"} <= set(systems)
    assert all(s["arch"] in {"WINDOWS", "MAC", "LINUX", "IOS", "ANDROID"} for s in systems.values())
    assert all("name" in c for c in joe.server_lia_countries())
    assert all("name" in c for c in joe.server_languages_and_locales())
    assert raw_post(emulator, "server/online", {"apikey": API_KEY}).json() == {"data": {"online": True}}


def test_queue_size_counts_analyses_still_waiting() -> None:
    with running_joe(scenario_raw(queue_seconds=100, analysis_seconds=100)) as emulator:
        joe = client(emulator)
        assert joe.server_info() == {"queuesize": 0}
        joe.submit_url("http://a.example/")
        joe.submit_url("http://b.example/")
        assert joe.server_info() == {"queuesize": 2}
        emulator.clock.advance(101)
        assert joe.server_info() == {"queuesize": 0}


def test_account_info_counts_submissions_against_the_quota() -> None:
    with running_joe(scenario_raw(account_type="pro", quota_daily=5, quota_monthly=40)) as emulator:
        joe = client(emulator)
        before = joe.account_info()
        assert before == {
            "type": "pro",
            "quota": {
                "daily": {"current": 0, "limit": 5, "remaining": 5},
                "monthly": {"current": 0, "limit": 40, "remaining": 40},
            },
        }
        joe.submit_url("http://a.example/")
        joe.submit_sample(("a.exe", io.BytesIO(b"abc")))
        quota = joe.account_info()["quota"]
        assert quota["daily"] == {"current": 2, "limit": 5, "remaining": 3}
        assert quota["monthly"] == {"current": 2, "limit": 40, "remaining": 38}


def test_exhausted_quota_is_a_plain_api_error_with_code_1() -> None:
    with running_joe(scenario_raw(quota_daily=2, quota_monthly=10)) as emulator:
        joe = client(emulator)
        joe.submit_url("http://a.example/")
        joe.submit_url("http://b.example/")
        with pytest.raises(jbxapi.ApiError) as caught:
            joe.submit_url("http://c.example/")
        # jbxapi has no class of its own for code 1: it must stay a plain ApiError
        assert type(caught.value) is jbxapi.ApiError
        assert caught.value.code == 1
        assert "quota" in caught.value.message.lower()
        assert len(inspect(emulator, "submissions")) == 2
        assert joe.account_info()["quota"]["daily"]["remaining"] == 0
        # the daily quota is per emulated day
        emulator.clock.advance(24 * 3600)
        assert joe.submit_url("http://c.example/")["submission_id"]


def test_wrong_key_is_invalid_api_key_everywhere(emulator: JoeEmulator) -> None:
    joe = client(emulator, apikey="not-the-key")
    with pytest.raises(jbxapi.InvalidApiKeyError):
        joe.server_online()
    with pytest.raises(jbxapi.InvalidApiKeyError):
        joe.submit_url("http://a.example/")
    with pytest.raises(jbxapi.InvalidApiKeyError):
        joe.analysis_search("abc")
    response = raw_post(emulator, "account/info", {"apikey": "nope"})
    assert response.status_code == 403
    assert error_of(response)[0] == 4


def test_missing_key_is_a_missing_parameter(emulator: JoeEmulator) -> None:
    response = raw_post(emulator, "server/online", {})
    assert response.status_code == 400
    assert error_of(response) == (2, "Missing parameter apikey.")


def test_unknown_parameter_is_code_3_naming_it(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    with pytest.raises(jbxapi.InvalidParameterError) as caught:
        joe.submit_url("http://a.example/", _extra_params={"colour": "red"})
    assert caught.value.message == "Unknown parameter colour."
    response = raw_post(emulator, "analysis/info", {"apikey": API_KEY, "webid": "1", "verbose": "1"})
    assert response.status_code == 400
    assert error_of(response) == (3, "Unknown parameter verbose.")


def test_missing_required_field_is_code_2(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    with pytest.raises(jbxapi.MissingParameterError) as caught:
        joe.analysis_info("")
    assert "webid" in caught.value.message
    with pytest.raises(jbxapi.MissingParameterError):
        joe.analysis_search("")
    with pytest.raises(jbxapi.MissingParameterError) as caught:
        joe._submit({})  # no sample, url or sample-url: what jbxapi's public methods never send
    assert "sample" in caught.value.message


def test_terms_and_conditions_must_be_accepted(emulator: JoeEmulator) -> None:
    joe = jbxapi.JoeSandbox(apikey=API_KEY, apiurl=emulator.url + "/api", accept_tac=False)
    with pytest.raises(jbxapi.MissingParameterError) as caught:
        joe.submit_url("http://a.example/")
    assert "accept-tac" in caught.value.message
    assert not [s for s in inspect(emulator, "submissions") if s["url"] == "http://a.example/"]


def test_unknown_endpoint_is_code_8(emulator: JoeEmulator) -> None:
    response = raw_post(emulator, "analysis/explode", {"apikey": API_KEY})
    assert response.status_code == 404
    assert error_of(response)[0] == 8
    # an apiurl without "/api" lands outside the API: jbxapi still gets its envelope
    wrong = jbxapi.JoeSandbox(apikey=API_KEY, apiurl=emulator.url, accept_tac=True)
    with pytest.raises(jbxapi.UnknownEndpointError):
        wrong.server_online()


def test_offline_server_says_so_and_refuses_submissions() -> None:
    with running_joe(scenario_raw(online=False)) as emulator:
        joe = client(emulator)
        assert joe.server_online() == {"online": False}
        with pytest.raises(jbxapi.ServerOfflineError):
            joe.submit_url("http://a.example/")
        with pytest.raises(jbxapi.ServerOfflineError):
            joe.submit_sample(("a.exe", io.BytesIO(b"abc")))
        assert joe.analysis_search("abc") == []  # reads still work
        response = raw_post(emulator, "submission/new", {"apikey": API_KEY, "accept-tac": "1", "url": "x"})
        assert response.status_code == 503
        assert inspect(emulator, "submissions") == []


def _value_for(name: str) -> Any:
    values: dict[str, Any] = {
        "systems": ["w10x64_22h2", "w11x64_22h2"],
        "tags": ["alert-1", "machine-2"],
        "analysis-time": 120,
        "system-date": "2024-02-29",
        "priority": 5,
        "delete-after-days": 30,
    }
    if name in values:
        return values[name]
    return True if jbxapi.submission_defaults[name] is jbxapi.UnsetBool else f"value-of-{name}"


def test_every_parameter_jbxapi_knows_is_accepted(emulator: JoeEmulator) -> None:
    assert set(jbxapi.submission_defaults) == SUBMISSION_BOOL_PARAMS | SUBMISSION_VALUE_PARAMS
    params = {name: _value_for(name) for name in jbxapi.submission_defaults}
    submission_id = client(emulator).submit_url("http://all-params.example/", params=params)["submission_id"]
    record = next(s for s in inspect(emulator, "submissions") if s["id"] == submission_id)
    assert record["tags"] == ["alert-1", "machine-2"]
    assert record["systems"] == ["w10x64_22h2", "w11x64_22h2"]
    assert record["params"]["internet-access"] == "1"
    assert record["params"]["analysis-time"] == "120"
    assert record["params"]["comments"] == "value-of-comments"
    # passwords are recorded only as present (jbxapi sends document-password as office-files-password)
    assert record["params"]["encrypt-with-password"] == "***"
    assert record["params"]["office-files-password"] == "***"
    assert "value-of-encrypt-with-password" not in str(inspect(emulator, "submissions"))
    assert "apikey" not in record["params"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"internet-access": "yes"}, "internet-access"),
        ({"analysis-time": "long"}, "analysis-time"),
        ({"analysis-time": "0"}, "analysis-time"),
        ({"priority": "11"}, "priority"),
        ({"system-date": "2024-02-30"}, "system-date"),
        ({"systems[]": "no-such-system"}, "systems[]"),
    ],
)
def test_bad_submission_values_are_code_3(emulator: JoeEmulator, extra: dict[str, str], field: str) -> None:
    with pytest.raises(jbxapi.InvalidParameterError) as caught:
        client(emulator).submit_url("http://bad-values.example/", _extra_params=extra)
    assert field in caught.value.message


def test_only_one_kind_of_sample_per_submission(emulator: JoeEmulator) -> None:
    with pytest.raises(jbxapi.InvalidParameterError):
        client(emulator).submit_url("http://a.example/", _extra_params={"sample-url": "http://b.example/x"})
    with pytest.raises(jbxapi.InvalidParameterError) as caught:
        client(emulator).submit_command_line("calc.exe")
    assert "command-line" in caught.value.message


@pytest.mark.parametrize(
    ("endpoint", "data", "files"),
    [
        ("submission/chunked-sample", {"apikey": API_KEY, "submission_id": "1"}, None),
        (
            "submission/chunked-sample",
            {
                "apikey": API_KEY,
                "submission_id": "1",
                "file-size": "x",
                "chunk-size": "1",
                "chunk-count": "1",
                "current-chunk-index": "1",
                "current-chunk-size": "1",
            },
            {"chunk": ("chunk", b"a")},
        ),
        ("analysis/download", {"apikey": API_KEY, "webid": "1000001", "type": "html", "run": "-1"}, None),
        ("analysis/list", {"apikey": API_KEY, "pagination": "1", "pagination_next": "abc"}, None),
        ("submission/info", {"apikey": API_KEY, "submission_id": "../../etc"}, None),
        ("submission/new", {"apikey": API_KEY, "accept-tac": "1", "sample-url": "has space"}, None),
        ("submission/new", {"apikey": API_KEY, "accept-tac": "1", "chunked-sample": ""}, None),
        ("server/online", None, {"apikey": ("x", b"\xff\xfe")}),
    ],
)
def test_malformed_requests_get_an_error_envelope_never_a_500(
    emulator: JoeEmulator, endpoint: str, data: Any, files: Any
) -> None:
    response = raw_post(emulator, endpoint, data, files)
    assert 400 <= response.status_code < 500
    code, message = error_of(response)
    assert code in {2, 3, 4}
    assert message


def test_garbage_bodies_are_not_server_errors(emulator: JoeEmulator) -> None:
    url = f"{emulator.url}/api/v2/server/online"
    for headers, body in [
        ({"Content-Type": "multipart/form-data; boundary=zzz"}, b"--zzz\r\nnonsense"),
        ({"Content-Type": "application/json"}, b'{"apikey": 1}'),
        ({}, b"\x00\x01\x02"),
    ]:
        response = requests.post(url, data=body, headers=headers, timeout=10)
        assert 400 <= response.status_code < 500
        assert error_of(response)[0] in {2, 3}


def test_calls_are_counted_per_endpoint() -> None:
    with running_joe() as emulator:
        joe = client(emulator)
        joe.server_online()
        joe.server_online()
        joe.analysis_search("x")
        with pytest.raises(jbxapi.InvalidParameterError):
            joe.analysis_info("42")
        assert calls(emulator, "server/online") == 2
        assert calls(emulator, "analysis/search") == 1
        stats = inspect(emulator, "calls")
        assert stats["analysis/info"]["statuses"] == {"400": 1}
        # inspection itself is not counted
        assert not any(name.startswith("_emulator") or name == "inspect" for name in stats)
