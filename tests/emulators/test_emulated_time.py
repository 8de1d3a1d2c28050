"""The emulators' wall clock is anchored to the real one: a scenario's alerts are dated as if they
had just come in, and what happens during the run is dated in the connector's present, however
fast the scenario's timeline runs. `advance` still jumps both by the same amount."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.mde.common import parse_time

from .conftest import mde_scenario_raw


def _moment(value: object) -> datetime:
    moment = parse_time(value)
    assert moment is not None, value
    return moment


def test_the_wall_clock_runs_with_the_real_one_while_the_timeline_runs_faster() -> None:
    before = datetime.now(UTC)
    clock = EmulatedClock(time_scale=0.01)
    deadline = time.monotonic() + 5
    while clock.elapsed() < 20 and time.monotonic() < deadline:  # 20 emulated seconds: 0.2 real ones
        time.sleep(0.01)
    assert clock.elapsed() >= 20
    now = clock.now()
    assert before <= now <= datetime.now(UTC) + timedelta(milliseconds=50)
    assert clock.at(-86400) == clock.start - timedelta(days=1)  # history is calendar time
    clock.advance(3600)
    assert clock.now() - datetime.now(UTC) > timedelta(minutes=59)


def test_scenario_alerts_are_shifted_so_the_newest_was_updated_at_the_start(make_mde) -> None:
    raw = mde_scenario_raw()
    del raw["defender"]["alert_times"]  # the default: shifted
    raw["time_scale"] = 0.01
    before = datetime.now(UTC)
    mde = make_mde(raw)
    after = datetime.now(UTC)
    alerts = {a["id"]: a for a in mde.get("/api/alerts").json()["value"]}
    newest = _moment(alerts["da637000000000000003_3"]["lastUpdateTime"])
    assert before <= newest <= after
    # the gaps of the scenario are kept: alert 1 was updated 2 days, 1 hour and 55 minutes earlier
    first = alerts["da637000000000000001_1"]
    assert newest - _moment(first["lastUpdateTime"]) == timedelta(days=2, hours=1, minutes=55)
    gap = _moment(first["lastUpdateTime"]) - _moment(first["alertCreationTime"])
    assert round(gap.total_seconds(), 3) == 299.877
    # and a window on the real clock of the last hour finds the newest one
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = mde.get("/api/alerts", params={"$filter": f"lastUpdateTime ge {since}"}).json()["value"]
    assert [a["id"] for a in recent] == ["da637000000000000003_3"]


def test_what_happens_during_the_run_is_dated_in_the_real_present(make_mde) -> None:
    raw = mde_scenario_raw()
    raw["time_scale"] = 0.01
    mde = make_mde(raw)
    time.sleep(0.3)  # 30 emulated seconds on the scenario's timeline (the old clock ran that far ahead)
    alert_id = "da637000000000000001_1"
    before = datetime.now(UTC)
    added = mde.http.post(f"/_emulator/alerts/{alert_id}/evidence", json=[{"entityType": "Url", "url": "http://x/"}])
    patched = mde.call("PATCH", f"/api/alerts/{alert_id}", json={"comment": "seen"})
    after = datetime.now(UTC)
    assert added.status_code == 200
    assert patched.status_code == 200
    assert before <= _moment(added.json()["lastUpdateTime"]) <= after
    comment = patched.json()["comments"][-1]
    assert before <= _moment(comment["createdTime"]) <= after
    assert before <= _moment(patched.json()["lastUpdateTime"]) <= after


def test_elapsed_at_inverts_at_across_a_jump() -> None:
    clock = EmulatedClock(time_scale=0.01)
    clock.advance(3600)
    for elapsed in (-60.0, 0.0, 0.5, 1800.0, 3600.0, 3700.0):
        assert clock.elapsed_at(clock.at(elapsed)) == pytest.approx(elapsed, abs=1e-3)
