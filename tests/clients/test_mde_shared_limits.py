"""Waits in the Defender client, over sockets: a 429's hold shared by the processes of one state
file, and waits that end when the step waiting lost its work item's lease."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from joedefender.adapters.defender import DOCUMENTED_RATES, RateLimiter
from joedefender.adapters.defender.limiter import Family, SharedHolds
from joedefender.adapters.sqlite import SqliteStore
from joedefender.bootstrap import StoredHolds
from joedefender.pipeline.lease import Claim, Claims
from joedefender.pipeline.ports import LeaseLost, WorkItem
from tests.clients.mde_fixtures import MACHINE, add_fault, alert, client_for, count, emulators, status_count
from tests.stores.helpers import wait_for

ALERT_ID = alert(1)["id"]


def test_a_429_met_by_one_process_holds_the_family_for_every_process_on_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "joedefender.db"
    # Two stores on one file are two processes as far as SQLite goes: nothing shared in memory.
    with emulators() as emu, SqliteStore(path) as first_store, SqliteStore(path) as second_store:
        scale = emu.scenario.time_scale
        first_limiter = RateLimiter(DOCUMENTED_RATES, time_scale=scale, shared_holds=StoredHolds(first_store))
        second_limiter = RateLimiter(DOCUMENTED_RATES, time_scale=scale, shared_holds=StoredHolds(second_store))
        first = client_for(emu, limiter=first_limiter)
        second = client_for(emu, limiter=second_limiter)
        with first, second:
            second.get_alert(ALERT_ID)  # the token, the connection, and a read of the (empty) holds
            add_fault(emu, path=r"^/api/alerts/", status=429, retry_after=1, times=1)
            waiting = threading.Thread(target=first.get_alert, args=(ALERT_ID,))
            waiting.start()
            wait_for(lambda: second_store.get(StoredHolds.KIND, Family.ALERTS) is not None)
            held = second_store.get(StoredHolds.KIND, Family.ALERTS)
            assert held is not None
            until = float(held.data["until"])
            assert until > time.time() + 0.5

            started = time.monotonic()
            second.get_machine(MACHINE)  # another family is not held
            assert time.monotonic() - started < 0.5
            second.get_alert(ALERT_ID)
            assert time.time() >= until  # the second process waited the first one's Retry-After out
            waiting.join(timeout=10)
        assert status_count(emu, "alerts.get", 429) == 1
        assert status_count(emu, "alerts.get", 200) == 3


class _Holds(SharedHolds):
    """Shared holds in memory, counting reads."""

    def __init__(self) -> None:
        self.until: dict[str, float] = {}
        self.reads = 0

    def held_until(self) -> dict[str, float]:
        self.reads += 1
        return dict(self.until)

    def hold(self, family: str, until: float) -> None:
        self.until[family] = max(until, self.until.get(family, 0.0))


def test_shared_holds_are_read_at_most_once_per_interval_and_ended_ones_are_ignored() -> None:
    monotonic = [100.0]
    wall = [5000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        monotonic[0] += seconds
        wall[0] += seconds

    holds = _Holds()
    limiter = RateLimiter(
        DOCUMENTED_RATES, monotonic=lambda: monotonic[0], sleep=sleep, shared_holds=holds, wall_clock=lambda: wall[0]
    )
    holds.until = {"alerts": 4990.0, "not a family": 9999.0}  # ended, and unknown
    limiter.acquire(Family.ALERTS)
    limiter.acquire(Family.ALERTS)
    assert (holds.reads, slept) == (1, [])  # one read for both: the cache lasts a second
    holds.until["alerts"] = 5030.0  # another process met a 429
    limiter.acquire(Family.MACHINES)  # still on the cached read
    monotonic[0] += 1.0
    limiter.acquire(Family.ALERTS)
    assert holds.reads >= 2
    assert sum(slept) == pytest.approx(30.0)
    limiter.hold(Family.MACHINES, 12.0)
    assert holds.until["machines"] == pytest.approx(wall[0] + 12.0)


def _claim(key: str) -> Claim:
    return Claim(WorkItem(key, 0.0, 1, "w1", 1e12, 1, f"token-{key}"))


def test_waits_for_a_429_end_when_the_waiting_step_loses_its_lease() -> None:
    claims = Claims()
    with emulators() as emu, client_for(emu, sleep=claims.sleep, retry_timeout=120.0) as client:
        client.get_alert(ALERT_ID)
        add_fault(emu, path=r"^/api/alerts/", status=429, retry_after=60, times=1)
        ended: dict[str, BaseException] = {}

        def step(claim: Claim) -> Callable[[], None]:
            def run() -> None:
                with claims.running(claim):
                    try:
                        client.get_alert(ALERT_ID)
                    except BaseException as exc:
                        ended[claim.item.key] = exc

            return run

        in_transport, in_limiter = _claim("retrying"), _claim("queued")
        threads = [threading.Thread(target=step(in_transport))]
        threads[0].start()
        # until the first has read its 429: the client holds the family (the emulator counting the
        # 429 is not enough, the answer may still be on its way)
        wait_for(lambda: client.limiter.held(Family.ALERTS) > 0)
        assert status_count(emu, "alerts.get", 429) == 1
        threads.append(threading.Thread(target=step(in_limiter)))  # meets the hold in the limiter
        threads[1].start()
        started = time.monotonic()
        in_transport.lose()
        in_limiter.lose()
        for thread in threads:
            thread.join(timeout=10)
        assert time.monotonic() - started < 5  # not the 60 s of the Retry-After
        assert {key: type(exc) for key, exc in ended.items()} == {"retrying": LeaseLost, "queued": LeaseLost}
        assert count(emu, "alerts.get") == 2  # neither sent again what its successor will send
