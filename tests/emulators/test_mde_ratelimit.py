"""The documented per-endpoint quotas (mde-api.md section 7) on the emulated clock, the 25
concurrent live response sessions, and the 429s in the call counters."""

from __future__ import annotations

import time

import pytest

from .conftest import ONLINE, command, mde_scenario_raw


def _statuses(responses) -> list[int]:
    return [r.status_code for r in responses]


def test_alerts_allow_100_a_minute_then_429_with_retry_after(mde):
    responses = [mde.get("/api/alerts", params={"$top": 1}) for _ in range(101)]
    assert _statuses(responses) == [200] * 100 + [429]
    throttled = responses[-1]
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    retry_after = int(throttled.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    # Other endpoints have their own budgets.
    assert mde.get("/api/machines").status_code == 200
    assert mde.get(f"/api/alerts/{'da637000000000000001_1'}").status_code == 200
    mde.advance(retry_after)
    assert mde.get("/api/alerts").status_code == 200
    stats = mde.emulator.server.stats.snapshot()["alerts.list"]
    assert stats["calls"] == 102
    assert stats["throttled"] == 1


def test_hourly_window_counts_too(make_mde):
    raw = mde_scenario_raw()
    raw["defender"]["alerts"] = []
    mde = make_mde(raw)
    statuses = []
    for _ in range(16):
        statuses += _statuses(mde.get("/api/alerts") for _request in range(100))
        mde.advance(60)
    assert statuses == [200] * 1500 + [429] * 100
    throttled = mde.get("/api/alerts")
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 60  # the hour window, not the minute one
    mde.advance(int(throttled.headers["Retry-After"]))
    assert mde.get("/api/alerts").status_code == 200


def test_batch_update_allows_10_a_minute(mde):
    body = {"alertIds": ["da637000000000000001_1"], "comment": "x"}
    statuses = _statuses(mde.post("/api/alerts/batchUpdate", json=body) for _ in range(11))
    assert statuses == [200] * 10 + [429]
    stored = {a["id"]: a for a in mde.inspect("alerts")["value"]}
    assert len(stored["da637000000000000001_1"]["comments"]) == 10


def test_retry_after_is_in_real_seconds_under_a_time_scale(make_mde):
    raw = mde_scenario_raw()
    raw["time_scale"] = 0.01  # an emulated minute takes 0.6 real seconds
    mde = make_mde(raw)
    body = {"alertIds": ["da637000000000000001_1"]}
    statuses = _statuses(mde.post("/api/alerts/batchUpdate", json=body) for _ in range(10))
    assert statuses == [200] * 10
    throttled = mde.post("/api/alerts/batchUpdate", json=body)
    assert throttled.status_code == 429
    retry_after = int(throttled.headers["Retry-After"])
    assert retry_after == 1  # at most 0.6 real seconds, rounded up to a whole second
    deadline = time.monotonic() + retry_after + 2
    while mde.post("/api/alerts/batchUpdate", json=body).status_code == 429:
        assert time.monotonic() < deadline, "no slot freed within Retry-After"
        time.sleep(0.05)


def test_runliveresponse_allows_10_calls_a_minute_even_refused_ones(mde):
    machines = ["e" * 40] * 9 + [ONLINE, ONLINE]  # nine 404s, one 201, then the 11th call
    statuses = _statuses(mde.run_live_response(m, [command("GetFile", Path="C:\\x")]) for m in machines)
    assert statuses == [404] * 9 + [201, 429]
    assert mde.emulator.server.stats.snapshot()["liveresponse.run"]["throttled"] == 1


def test_25_running_sessions_per_tenant(make_mde):
    raw = mde_scenario_raw()
    extra = [{"id": f"{i:040x}", "computerDnsName": f"pc-{i}"} for i in range(1, 27)]
    offline = {"id": "9" * 40, "computerDnsName": "offline", "online": [{"start": 99999}]}
    raw["defender"]["machines"] = [*extra, offline]
    raw["defender"]["live_response"] = {"command_seconds": 5000, "runscript_timeout_seconds": 99999}
    mde = make_mde(raw)
    assert mde.upload("noop.ps1", b"").status_code == 200
    run = [command("RunScript", ScriptName="noop.ps1")]
    statuses = []
    for machine in extra[:25]:
        statuses.append(mde.run_live_response(machine["id"], run).status_code)
        if len(statuses) % 10 == 0:
            mde.advance(60)  # stay within 10 calls a minute
    assert statuses == [201] * 25
    refused = mde.run_live_response(extra[25]["id"], run)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "TooManyRequests"
    assert int(refused.headers["Retry-After"]) >= 1
    # A session queued for an offline machine is not running: it is accepted.
    assert mde.run_live_response(offline["id"], run).status_code == 201
    mde.advance(60)
    first = mde.get("/api/machineactions", params={"$filter": f"machineId eq '{extra[0]['id']}'"}).json()["value"][0]
    assert mde.post(f"/api/machineactions/{first['id']}/cancel", json={"Comment": "free a slot"}).status_code == 200
    assert mde.run_live_response(extra[25]["id"], run).status_code == 201


def test_rate_limits_can_be_switched_off(make_mde):
    raw = mde_scenario_raw()
    raw["defender"]["rate_limits"] = False
    mde = make_mde(raw)
    assert set(
        _statuses(mde.post("/api/alerts/batchUpdate", json={"alertIds": ["da637000000000000001_1"]}) for _ in range(15))
    ) == {200}


@pytest.mark.parametrize("path", ["/api/indicators/import", "/api/indicators/BatchDelete"])
def test_indicator_batches_allow_30_a_minute(mde, path):
    key = "Indicators" if path.endswith("import") else "IndicatorIds"
    statuses = _statuses(mde.post(path, json={key: []}) for _ in range(31))
    assert statuses == [400] * 30 + [429]
