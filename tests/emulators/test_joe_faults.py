"""Injected faults on the Joe emulator, as the official jbxapi client experiences them."""

from __future__ import annotations

import io
from typing import Any

import jbxapi
import pytest
import requests

from .joe_fixtures import calls, client, inspect, running_joe, scenario_raw, wait_for


def _with_faults(*faults: dict[str, Any]) -> dict[str, Any]:
    return {**scenario_raw(), "faults": [{"service": "joe", **f} for f in faults]}


def test_a_503_with_code_5_is_server_offline_then_recovers() -> None:
    fault = {"path": "/api/v2/server/online$", "status": 503, "code": 5, "message": "Maintenance", "times": 1}
    with running_joe(_with_faults(fault)) as emulator:
        joe = client(emulator)
        with pytest.raises(jbxapi.ServerOfflineError) as caught:
            joe.server_online()
        assert caught.value.message == "Maintenance"
        assert joe.server_online() == {"online": True}
        assert inspect(emulator, "calls")["server/online"]["statuses"] == {"200": 1, "503": 1}


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (503, jbxapi.ServerOfflineError),
        (500, jbxapi.InternalServerError),
        (502, jbxapi.InternalServerError),
        (403, jbxapi.PermissionError),
        (404, jbxapi.UnknownEndpointError),
    ],
)
def test_a_status_without_a_code_gets_the_matching_joe_code(status: int, error: type[Exception]) -> None:
    with running_joe(_with_faults({"path": "analysis/search", "status": status})) as emulator, pytest.raises(error):
        client(emulator).analysis_search("x")


def test_a_429_is_a_plain_api_error_and_carries_retry_after() -> None:
    fault = {"path": "analysis/search", "status": 429, "retry_after": 7}
    with running_joe(_with_faults(fault)) as emulator:
        with pytest.raises(jbxapi.ApiError) as caught:
            client(emulator).analysis_search("x")
        assert type(caught.value) is jbxapi.ApiError
        response = requests.post(f"{emulator.url}/api/v2/analysis/search", data={"q": "x"}, timeout=10)
        assert (response.status_code, response.headers["Retry-After"]) == (429, "7")


def test_a_dropped_connection_is_a_connection_error() -> None:
    with running_joe(_with_faults({"path": "submission/new", "drop": True, "times": 1})) as emulator:
        joe = client(emulator)
        with pytest.raises(jbxapi.ConnectionError):
            joe.submit_url("http://a.example/")
        assert inspect(emulator, "submissions") == []
        assert inspect(emulator, "calls")["submission/new"]["dropped"] == 1
        assert joe.submit_url("http://a.example/")["submission_id"]


@pytest.mark.parametrize(
    ("fault", "error"), [({"status": 500}, jbxapi.InternalServerError), ({"drop": True}, jbxapi.ConnectionError)]
)
def test_a_fault_after_the_handler_keeps_the_submission(fault: dict[str, Any], error: type[Exception]) -> None:
    """`after: true`: Joe took the submission, the client only lost the answer."""
    with running_joe(_with_faults({"path": "submission/new", "after": True, "times": 1, **fault})) as emulator:
        joe = client(emulator)
        with pytest.raises(error):
            joe.submit_url("http://a.example/")
        [record] = inspect(emulator, "submissions")
        assert record["url"] == "http://a.example/"
        assert record["webids"] != []


def test_a_drop_during_a_chunked_upload_leaves_the_submission_waiting() -> None:
    with running_joe(_with_faults({"path": "chunked-sample", "drop": True})) as emulator:
        with pytest.raises(jbxapi.ConnectionError):
            client(emulator).submit_sample(("a.exe", io.BytesIO(b"abc")))
        [record] = inspect(emulator, "submissions")
        assert (record["status"], record["sha256"], record["webid"]) == ("uploading", None, None)


def test_a_delay_beyond_the_timeout_is_retried_by_jbxapi() -> None:
    fault = {"path": "server/info", "delay": 0.6, "times": 1}
    with running_joe(_with_faults(fault)) as emulator:
        joe = client(emulator, timeout=0.2, retries=3)
        assert joe.server_info() == {"queuesize": 0}
        # the timed-out attempt is counted once its delayed handler finishes
        wait_for(lambda: calls(emulator, "server/info") == 2)


def test_a_delay_on_every_attempt_ends_in_a_connection_error() -> None:
    with running_joe(_with_faults({"path": "server/info", "delay": 0.4})) as emulator:
        joe = client(emulator, timeout=0.15, retries=2)
        with pytest.raises(jbxapi.ConnectionError):
            joe.server_info()
        wait_for(lambda: calls(emulator, "server/info") == 2)


def test_faults_added_at_run_time() -> None:
    with running_joe() as emulator:
        joe = client(emulator)
        added = requests.post(
            f"{emulator.url}/_emulator/faults",
            json={"path": "analysis/info", "status": 503, "code": 5, "times": 2},
            timeout=10,
        )
        assert added.json() == {"added": 1}
        for _ in range(2):
            with pytest.raises(jbxapi.ServerOfflineError):
                joe.analysis_info("1")
        with pytest.raises(jbxapi.InvalidParameterError):  # the fault is spent: the real answer
            joe.analysis_info("1")


def test_inspection_errors_use_the_joe_envelope() -> None:
    with running_joe() as emulator:
        response = requests.post(f"{emulator.url}/_emulator/clock/advance", json={"seconds": -1}, timeout=10)
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == 3
