"""Malformed input of any kind gets a 4xx with the documented error body, never a 5xx; injected
faults from the scenario apply to the API."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import httpx
import pytest

from .conftest import ONLINE, mde_scenario_raw

ENDPOINTS = [
    ("GET", "/api/alerts"),
    ("GET", "/api/alerts/da637000000000000001_1"),
    ("PATCH", "/api/alerts/da637000000000000001_1"),
    ("POST", "/api/alerts/batchUpdate"),
    ("GET", "/api/machines"),
    ("GET", f"/api/machines/{ONLINE}"),
    ("POST", f"/api/machines/{ONLINE}/runliveresponse"),
    ("GET", "/api/machineactions"),
    ("POST", "/api/machineactions/00000000-0000-0000-0000-000000000000/cancel"),
    ("GET", "/api/machineactions/00000000-0000-0000-0000-000000000000/GetLiveResponseResultDownloadLink(index=0)"),
    ("POST", "/api/libraryfiles"),
    ("GET", "/api/libraryfiles"),
    ("POST", "/api/indicators"),
    ("POST", "/api/indicators/import"),
    ("POST", "/api/indicators/BatchDelete"),
    ("GET", "/api/indicators"),
]
_ATOMS: list[object] = [None, True, 0, -1, 1e308, "", "x" * 5000, "\u0000", "'", "é", [], {}]
_KEYS = ["Commands", "Comment", "status", "comment", "alertIds", "Indicators", "IndicatorIds", "indicatorValue",
         "indicatorType", "action", "title", "description", "type", "params", "key", "value", "$filter"]  # fmt: skip


def _random_json(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 3 or roll < 0.4:
        return rng.choice(_ATOMS)
    if roll < 0.7:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(_KEYS): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _random_bytes(rng: random.Random) -> bytes:
    choices = [
        b"",
        b"{",
        b"null",
        b"\xff\xfe\x00garbage",
        b'{"Commands": [{"type": "GetFile", "params": [{"key": "Path"}]}], "Comment": "x"}',
        bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))),
        b"--boundary\r\nContent-Disposition: form-data; name=file\r\n\r\nx\r\n--boundary--",
    ]
    return rng.choice(choices)


def _random_query(rng: random.Random) -> dict[str, str]:
    values = ["", "'", "((", "status eq", "1e9", "-5", "99999999999", "lastUpdateTime ge 2024-99-99T00:00:00Z",
              "id eq ''''", "and or", "\u00e9", "%",
              "status eq 'New' and (severity eq 'High' or", "evidence,x"]  # fmt: skip
    return {rng.choice(["$filter", "$top", "$skip", "$expand", "$select", "x"]): rng.choice(values) for _ in range(2)}


def test_fuzzed_bodies_and_queries_never_get_a_5xx(make_mde):
    raw = mde_scenario_raw()
    raw["defender"]["rate_limits"] = False
    mde = make_mde(raw)
    rng = random.Random(20240501)
    seen: set[int] = set()
    for _ in range(600):
        method, path = rng.choice(ENDPOINTS)
        kind = rng.random()
        kwargs: dict[str, Any] = {"params": _random_query(rng)}
        if kind < 0.5:
            kwargs["json"] = _random_json(rng)
        elif kind < 0.8:
            kwargs["content"] = _random_bytes(rng)
            kwargs["headers"] = {
                "Content-Type": rng.choice(["application/json", "multipart/form-data; boundary=boundary", "text/plain"])
            }
        else:
            kwargs["files"] = {"file": (rng.choice(["a.ps1", "b c", ""]), _random_bytes(rng))}
        response = mde.call(method, path, **kwargs)
        assert response.status_code < 500, (method, path, kwargs, response.text)
        seen.add(response.status_code)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"code", "message", "target"}
            uuid.UUID(error["target"])
    assert {200, 400} <= seen


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/nothing", 404),
        ("DELETE", "/api/alerts", 405),
        ("PUT", "/api/machines", 405),
        ("GET", "/api/machines/%ZZ", 404),
        ("GET", "/api/alerts/" + "x" * 3000, 404),
    ],
)
def test_unknown_routes_and_methods(mde, method, path, status):
    response = mde.call(method, path)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"code", "message", "target"}


def test_malformed_token_requests_never_get_a_5xx(mde):
    for content, content_type in [
        (b"", "application/x-www-form-urlencoded"),
        (b"\xff\xfe", "application/x-www-form-urlencoded"),
        (b"grant_type=client_credentials&client_id=%ZZ", "application/x-www-form-urlencoded"),
        (b'{"grant_type": "client_credentials"}', "application/json"),
        (b"x", "multipart/form-data; boundary=z"),
    ]:
        for path in ("/t/oauth2/token", f"/{mde.emulator.scenario.defender.tenant_id}/oauth2/v2.0/token"):
            response = mde.http.post(path, content=content, headers={"Content-Type": content_type})
            assert 400 <= response.status_code < 500
            assert "error" in response.json()
    assert mde.http.post("/t/oauth2/token", headers={"Authorization": "Basic !!!"}).status_code < 500


def test_scenario_faults_apply_to_the_api(make_mde):
    raw = mde_scenario_raw()
    raw["faults"] = [
        {"service": "defender", "method": "GET", "path": "^/api/alerts$", "status": 503, "times": 1},
        {"service": "defender", "path": "/runliveresponse", "status": 429, "retry_after": 7, "times": 1},
        {"service": "defender", "path": "/api/machines$", "drop": True, "times": 1},
    ]
    mde = make_mde(raw)
    first = mde.get("/api/alerts")
    assert first.status_code == 503
    assert set(first.json()["error"]) == {"code", "message", "target"}
    assert mde.get("/api/alerts").status_code == 200
    throttled = mde.run_live_response(ONLINE, [{"type": "GetFile", "params": [{"key": "Path", "value": "C:\\x"}]}])
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "7"
    with pytest.raises(httpx.TransportError):
        mde.get("/api/machines")
    assert mde.get("/api/machines").status_code == 200
    stats = mde.emulator.server.stats.snapshot()
    assert stats["alerts.list"]["statuses"] == {"200": 1, "503": 1}
    assert stats["liveresponse.run"]["throttled"] == 1
    assert stats["machines.list"]["dropped"] == 1


def test_inspection_needs_no_token_and_is_not_counted(mde):
    files = mde.inspect(f"machines/{ONLINE}/files")
    assert files["files"] == [{"path": "C:\\Users\\alice\\Downloads\\evil.exe", "size": 15}]
    assert files["quarantine"][0]["threatName"] == "Trojan:Win32/Emotet!ml"
    assert mde.inspect("machines/desk-01.contoso.local/files")["machineId"] == ONLINE
    assert mde.http.get("/_emulator/machines/" + "e" * 40 + "/files").status_code == 404
    for name in ("alerts", "indicators", "machineactions", "library"):
        assert isinstance(mde.inspect(name)["value"], list)
    assert "alerts.list" not in mde.emulator.server.stats.snapshot()


def test_pathological_filters_are_400(mde):
    for filter_ in ("(" * 5000 + "status eq 'New'" + ")" * 5000, " and ".join(["status eq 'New'"] * 2000)):
        response = mde.get("/api/alerts", params={"$filter": filter_})
        assert response.status_code in (200, 400)
    deep = mde.get("/api/alerts", params={"$filter": "(" * 5000 + "status eq 'New'" + ")" * 5000})
    assert deep.json()["error"]["code"] == "ODataError"


def test_deeply_nested_json_is_400(mde):
    for path in ("/api/indicators", "/api/indicators/import", f"/api/machines/{ONLINE}/runliveresponse"):
        response = mde.post(path, content=b"[" * 100_000, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "InvalidRequestBody"


@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 503, "retry_after": 1}, {"drop": True}])
def test_a_fault_after_the_handler_applies_the_change_and_loses_the_answer(make_mde, fault):
    """`after: true`: the PATCH and the runliveresponse are carried out, only their answer is a 5xx
    or a dropped connection (the write-back's main risk: applied, but the client cannot know)."""
    raw = mde_scenario_raw()
    raw["faults"] = [
        {"service": "defender", "method": "PATCH", "path": "^/api/alerts/", "after": True, "times": 1, **fault},
        {"service": "defender", "path": "/runliveresponse$", "after": True, "times": 1, **fault},
    ]
    mde = make_mde(raw)
    alert_id = "da637000000000000001_1"
    getfile = [{"type": "GetFile", "params": [{"key": "Path", "value": "C:\\Users\\alice\\Downloads\\evil.exe"}]}]
    if fault.get("drop"):
        with pytest.raises(httpx.TransportError):
            mde.call("PATCH", f"/api/alerts/{alert_id}", json={"comment": "applied, answer lost"})
        with pytest.raises(httpx.TransportError):
            mde.run_live_response(ONLINE, getfile)
    else:
        patched = mde.call("PATCH", f"/api/alerts/{alert_id}", json={"comment": "applied, answer lost"})
        assert patched.status_code == fault["status"]
        assert set(patched.json()["error"]) == {"code", "message", "target"}
        assert mde.run_live_response(ONLINE, getfile).status_code == fault["status"]
    [stored] = [a for a in mde.inspect("alerts")["value"] if a["id"] == alert_id]
    assert [c["comment"] for c in stored["comments"]] == ["applied, answer lost"]
    [action] = [a for a in mde.inspect("machineactions")["value"] if a["machineId"] == ONLINE]
    assert action["status"] in ("Pending", "InProgress")
    # The session is real: a second request for the machine is refused as the real API does.
    again = mde.run_live_response(ONLINE, getfile)
    assert (again.status_code, again.json()["error"]["code"]) == (400, "ActiveRequestAlreadyExists")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/api/alerts/da637000000000000001_1", {"comment": "landed late"}),
        ("POST", "/api/alerts/batchUpdate", {"alertIds": ["da637000000000000001_1"], "comment": "landed late"}),
    ],
)
def test_a_held_write_is_carried_out_after_the_client_gave_up(make_mde, method, path, body):
    """A `delay` alone: the write is held past the client's timeout, then applied all the same."""
    raw = mde_scenario_raw()
    raw["faults"] = [{"service": "defender", "method": method, "path": f"^{path}$", "delay": 1.0, "times": 1}]
    mde = make_mde(raw)

    def comments() -> list[str]:
        [stored] = [a for a in mde.inspect("alerts")["value"] if a["id"] == "da637000000000000001_1"]
        return [c["comment"] for c in stored.get("comments") or []]

    with pytest.raises(httpx.ReadTimeout):
        mde.call(method, path, json=body, timeout=0.2)
    assert comments() == []  # the client gave up; the server still holds the write
    deadline = time.monotonic() + 10
    while not comments():
        assert time.monotonic() < deadline, "the held write never landed"
        time.sleep(0.05)
    assert comments() == ["landed late"]
    assert [rule["fired"] for rule in mde.inspect("faults")] == [1]
