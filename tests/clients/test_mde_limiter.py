"""The client-side limiter: sliding minute and hour windows per family, on a fake clock."""

from __future__ import annotations

import bisect
import threading
import time

import pytest

from joedefender.adapters.defender.limiter import DOCUMENTED_RATES, Family, Rate, RateLimiter


class FakeClock:
    """monotonic/sleep pair: sleeping advances time and records how long was slept."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def _limiter(clock: FakeClock, time_scale: float = 1.0) -> RateLimiter:
    return RateLimiter(DOCUMENTED_RATES, time_scale=time_scale, monotonic=clock.monotonic, sleep=clock.sleep)


def _max_in_window(stamps: list[float], window: float) -> int:
    ordered = sorted(stamps)
    return max(bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered))


def test_documented_rates_are_the_reference_numbers():
    assert DOCUMENTED_RATES[Family.ALERTS] == Rate(100, 1500)
    assert DOCUMENTED_RATES[Family.LIVE_RESPONSE] == Rate(10)
    assert DOCUMENTED_RATES[Family.ALERTS_BATCH_UPDATE] == Rate(10, 500)
    assert DOCUMENTED_RATES[Family.INDICATORS_IMPORT] == Rate(30)
    assert DOCUMENTED_RATES[Family.INDICATORS_BATCH_DELETE] == Rate(30, 1500)


def test_a_minute_allows_the_rate_then_waits_for_the_oldest_slot():
    clock = FakeClock()
    limiter = _limiter(clock)
    for _ in range(100):
        limiter.acquire(Family.ALERTS)
    assert clock.sleeps == []
    clock.now += 10.0
    limiter.acquire(Family.ALERTS)
    # the 101st waits until the first slot (taken at t=1000) is a minute old: 50 s more
    assert sum(clock.sleeps) == pytest.approx(50.0)


def test_the_wait_for_a_slot_is_told_without_sleeping_or_taking_one():
    clock = FakeClock()
    limiter = _limiter(clock)
    assert limiter.wait_needed(Family.LIVE_RESPONSE) == 0.0
    for _ in range(10):
        limiter.acquire(Family.LIVE_RESPONSE)
    clock.now += 20.0
    assert limiter.wait_needed(Family.LIVE_RESPONSE) == pytest.approx(40.0)
    assert limiter.wait_needed(Family.LIVE_RESPONSE) == pytest.approx(40.0)  # asking took nothing
    limiter.hold(Family.LIVE_RESPONSE, 55.0)
    assert limiter.wait_needed(Family.LIVE_RESPONSE) == pytest.approx(55.0)
    assert limiter.wait_needed("not-limited") == 0.0
    assert clock.sleeps == []


def test_the_hour_window_binds_after_fifteen_full_minutes():
    clock = FakeClock()
    limiter = _limiter(clock)
    stamps = []
    for _ in range(1600):
        limiter.acquire(Family.ALERTS)
        stamps.append(clock.now)
    assert _max_in_window(stamps, 60.0) <= 100
    assert _max_in_window(stamps, 3600.0) <= 1500
    # slot 1501 could not be taken before the first slot was an hour old
    assert stamps[1500] >= stamps[0] + 3600.0


def test_families_do_not_share_slots():
    clock = FakeClock()
    limiter = _limiter(clock)
    for _ in range(10):
        limiter.acquire(Family.LIVE_RESPONSE)
    for _ in range(100):
        limiter.acquire(Family.MACHINES)
    assert clock.sleeps == []
    limiter.acquire(Family.LIVE_RESPONSE)
    assert sum(clock.sleeps) == pytest.approx(60.0)


def test_time_scale_shrinks_the_windows():
    clock = FakeClock()
    limiter = _limiter(clock, time_scale=0.01)
    for _ in range(11):
        limiter.acquire(Family.LIVE_RESPONSE)
    assert sum(clock.sleeps) == pytest.approx(0.6)


def test_a_slot_counts_from_the_answer_and_holds_while_in_flight():
    clock = FakeClock()
    limiter = _limiter(clock)
    with limiter.slot(Family.LIVE_RESPONSE):
        clock.now += 30.0  # a slow request
    for _ in range(9):
        limiter.acquire(Family.LIVE_RESPONSE)
    start = clock.now
    limiter.acquire(Family.LIVE_RESPONSE)  # the 11th: waits for the first, counted from its answer
    assert clock.now == pytest.approx(start + 60.0)


def test_in_flight_slots_block_without_a_known_end():
    clock = FakeClock()
    limiter = _limiter(clock)
    holders = [limiter.slot(Family.LIVE_RESPONSE) for _ in range(10)]
    for holder in holders:
        holder.__enter__()
    waited = []
    original_sleep = clock.sleep

    def sleep_and_release(seconds: float) -> None:
        waited.append(seconds)
        original_sleep(seconds)
        if holders:
            holders.pop().__exit__(None, None, None)  # one answer arrives during the wait

    limiter._sleep = sleep_and_release
    limiter.acquire(Family.LIVE_RESPONSE)
    assert waited
    assert waited[0] == pytest.approx(60.0)  # nothing expires sooner than a window from now
    assert clock.now >= 1000.0 + 60.0


def test_unknown_family_is_not_limited():
    clock = FakeClock()
    limiter = RateLimiter({Family.ALERTS: Rate(1)}, monotonic=clock.monotonic, sleep=clock.sleep)
    for _ in range(5):
        limiter.acquire(Family.MACHINES)
    assert clock.sleeps == []


def test_time_scale_must_be_positive():
    with pytest.raises(ValueError, match="time_scale"):
        RateLimiter(DOCUMENTED_RATES, time_scale=0)


def test_threads_share_one_limiter_under_the_rate():
    """Real clock, scaled: a minute is 60 ms. Five threads take 250 slots; no 60 ms holds more than 100."""
    limiter = RateLimiter(DOCUMENTED_RATES, time_scale=0.001)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(250 // 5):
            with limiter.slot(Family.ALERTS), lock:
                stamps.append(time.monotonic())  # between the grant and the answer, like a request

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(stamps) == 250
    # slot k is granted a full window after slot k-100 was answered: no 60 ms holds more than 100
    assert _max_in_window(stamps, 0.06) <= 100
    assert max(stamps) - min(stamps) >= 0.06 * 2  # 250 slots need at least two full windows


def test_a_retry_after_holds_the_family_for_every_thread():
    """A 429's Retry-After seen by one thread holds that endpoint family for all of them."""
    clock = FakeClock()
    limiter = _limiter(clock)
    limiter.acquire(Family.LIVE_RESPONSE)
    limiter.hold(Family.LIVE_RESPONSE, 7.0)
    limiter.acquire(Family.ALERTS)  # another family is not held
    assert clock.sleeps == []
    limiter.acquire(Family.LIVE_RESPONSE)
    assert sum(clock.sleeps) == pytest.approx(7.0)
    limiter.hold(Family.LIVE_RESPONSE, 2.0)
    limiter.hold(Family.LIVE_RESPONSE, 1.0)  # a shorter hint does not shorten the hold
    limiter.acquire(Family.LIVE_RESPONSE)
    assert sum(clock.sleeps) == pytest.approx(9.0)
