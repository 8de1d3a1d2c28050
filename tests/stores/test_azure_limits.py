"""The tenant's Defender rate budget shared through Azure Tables (on Azurite) by several instances.

Time is a fake clock the limiters share: it moves only when a limiter sleeps to wait for a slot,
so the test measures the budget in documented seconds and never sleeps itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from joedefender.adapters.azure._table import row_key, text_of
from joedefender.adapters.azure.limits import TableRateLimiter
from joedefender.adapters.azure.store import AzureStore
from joedefender.adapters.defender.limiter import Family, Limiter
from joedefender.adapters.graph import FAMILY as GRAPH_FAMILY
from joedefender.bootstrap import SHARED_RATES, shared_limiter
from tests.azurite import Azurite
from tests.stores.conftest import open_azure_store
from tests.stores.helpers import FakeClock, run_threads, wait_for


class SharedClock:
    """Wall time of every instance; `sleep` moves it on (a limiter waiting is time passing)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += max(seconds, 0.001)
            self.slept += seconds


@pytest.fixture
def store(azurite: Azurite) -> Iterator[AzureStore]:
    with open_azure_store(azurite, FakeClock()) as opened:
        yield opened


def _instances(
    store: AzureStore, clock: SharedClock, count: int, **rates: tuple[int, int | None]
) -> list[TableRateLimiter]:
    """`count` limiters as `count` instances of the app would have them: one table, one budget."""
    return [store.rate_limiter(rates, clock=clock, sleep=clock.sleep) for _ in range(count)]


def _answered(store: AzureStore, family: str) -> list[float]:
    """The answer times the shared budget holds for `family` (the last hour's)."""
    entity = store._table.get_entity("limits", row_key("rate", family))
    return sorted(json.loads(text_of(entity))["answered"])


def _most_in_any_window(times: list[float], length: float) -> int:
    return max(sum(1 for t in times if start <= t < start + length) for start in times)


def test_instances_never_exceed_the_shared_budget(store: AzureStore) -> None:
    clock = SharedClock()
    limiters = _instances(store, clock, 3, alerts=(5, 12))

    def requests(index: int) -> None:
        for _ in range(4):
            limiters[index].acquire("alerts")

    run_threads(3, requests)
    answered = _answered(store, "alerts")
    assert len(answered) == 12  # every acquire counted: no instance overwrote another's
    assert _most_in_any_window(answered, 60.0) == 5  # 5 a minute across the three instances
    assert answered[-1] - answered[0] >= 120.0  # so 12 take at least two more windows

    # The hour's 12 are used up: the next request, from any instance, waits out the hour.
    limiters[1].acquire("alerts")
    assert clock.now >= answered[0] + 3600.0


def test_a_slot_in_flight_holds_the_window_for_every_instance(store: AzureStore) -> None:
    clock = SharedClock()
    first, second = _instances(store, clock, 2, runliveresponse=(1, None))
    answered_at: list[float] = []

    def wait_then_send() -> None:
        second.acquire("runliveresponse")
        answered_at.append(clock())

    with first.slot("runliveresponse"):
        waiter = threading.Thread(target=wait_then_send)
        waiter.start()
        wait_for(lambda: clock.slept >= 120.0)  # the other instance waits while the request is in flight
        assert not answered_at
        end = clock()
    waiter.join(timeout=30)
    assert answered_at
    assert answered_at[0] >= end + 60.0  # counted from the answer, not from when it was sent


def test_a_retry_after_holds_the_family_for_every_instance(store: AzureStore) -> None:
    clock = SharedClock()
    first, second = _instances(store, clock, 2, machines=(100, 1500), alerts=(100, 1500))
    first.acquire("machines")
    first.hold("machines", 30.0)
    second.acquire("alerts")  # another family is not held
    assert clock.slept == 0
    second.acquire("machines")
    assert clock.now >= 30.0
    second.acquire("not limited")  # a family without a documented rate passes at once
    second.hold("not limited", 100.0)


def test_the_scale_shrinks_the_windows(store: AzureStore) -> None:
    clock = SharedClock()
    limiter = store.rate_limiter({"alerts": (2, None)}, time_scale=0.01, clock=clock, sleep=clock.sleep)
    assert limiter.time_scale == 0.01
    for _ in range(5):
        limiter.acquire("alerts")
    assert _most_in_any_window(_answered(store, "alerts"), 0.6) <= 2  # 2 a minute of 0.6 real seconds
    assert 1.2 <= clock.now < 2.0


def test_bootstrap_gives_the_documented_rates_to_the_shared_limiter(store: AzureStore) -> None:
    assert SHARED_RATES["runliveresponse"] == (10, None)
    assert SHARED_RATES["alerts"] == (100, 1500)
    assert SHARED_RATES["alerts.batchUpdate"] == (10, 500)
    limiter: Limiter = shared_limiter(store, time_scale=0.5)  # what the Defender client takes
    assert limiter.time_scale == 0.5
    limiter.acquire(Family.LIVE_RESPONSE)


def test_graphs_150_a_minute_is_one_budget_for_every_instance(store: AzureStore) -> None:
    """Graph's security throttle is per app and tenant: instances that each build the Graph client
    on the shared limiter stay at 150 a minute together, in a family of its own."""
    assert SHARED_RATES[GRAPH_FAMILY] == (150, None)
    clock = SharedClock()
    limiters = [store.rate_limiter(SHARED_RATES, clock=clock, sleep=clock.sleep) for _ in range(3)]

    for turn in range(150):  # the three instances in turn use up the minute's budget ...
        limiters[turn % 3].acquire(GRAPH_FAMILY)
    assert clock.now < 1.0  # none waited for the window (only the brief back-off of a write another won)
    limiters[1].acquire(GRAPH_FAMILY)  # ... so the 151st, from any of them, waits for the minute to pass
    assert clock.now >= 60.0
    limiters[0].acquire(Family.ALERTS)  # Defender's families are apart from Graph's
    assert len(_answered(store, "alerts")) == 1


def test_a_slot_costs_two_writes_when_no_other_instance_wrote_since(store: AzureStore) -> None:
    """The budget as this instance last wrote it is what the next write is checked against: no read first."""
    from bench.storage_requests import counting

    clock = SharedClock()
    [limiter] = _instances(store, clock, 1, alerts=(100, 1500))
    with limiter.slot("alerts"):  # the first of the family: read (there is none), then create
        pass
    with counting() as requests, limiter.slot("alerts"):
        pass
    assert requests.snapshot() == {"tables.update:limits": 2}  # taken, then answered
    assert len(_answered(store, "alerts")) == 2


def test_an_instance_that_dies_with_a_request_in_flight_cannot_make_another_exceed_the_budget(
    store: AzureStore,
) -> None:
    """The slot is counted before the request is sent; the dead instance never answers it, so it
    stays counted (until STALE_AFTER): the living instance cannot send a request Defender would
    count in the same minute and refuse."""
    clock = SharedClock()
    dead, alive = _instances(store, clock, 2, runliveresponse=(2, None))
    sent = dead.slot("runliveresponse")
    sent.__enter__()  # the request went out at 0.0; the process was killed before its answer
    alive.acquire("runliveresponse")
    assert clock.now < 60.0  # the second of the minute's two
    alive.acquire("runliveresponse")
    assert clock.now >= 60.0  # not a third one inside the minute of the dead instance's request


def test_a_step_whose_lease_was_lost_while_it_waited_its_turn_takes_no_slot(store: AzureStore) -> None:
    """One thread per family takes slots in an instance; a step queued behind it that lost its
    lease meanwhile stops when its turn comes (`Claims.sleep`), before it takes a slot."""
    from joedefender.pipeline.lease import Claim, Claims
    from joedefender.pipeline.ports import LeaseLost, WorkItem

    clock, claims, turn = SharedClock(), Claims(), threading.Event()
    holder: list[threading.Thread] = []

    def sleep(seconds: float) -> None:
        if holder and threading.current_thread() is holder[0] and seconds > 0:
            turn.wait(timeout=30)  # the first taker waits for the budget, holding the family's turn
            clock.sleep(seconds)
        else:
            claims.sleep(seconds)

    limiter = store.rate_limiter({"alerts": (2, None)}, clock=clock, sleep=sleep)
    limiter.acquire("alerts")
    limiter.acquire("alerts")  # the minute's budget is used up
    first = threading.Thread(target=limiter.acquire, args=("alerts",))
    holder.append(first)
    first.start()
    wait_for(lambda: clock.slept == 0 and first.is_alive() and len(_answered(store, "alerts")) == 2)
    claim = Claim(WorkItem("comment:x", 0.0, 1, "w", 1e12, 1, "t"))
    outcome: list[BaseException | None] = []

    def queued() -> None:
        with claims.running(claim):
            try:
                limiter.acquire("alerts")
                outcome.append(None)
            except LeaseLost as exc:
                outcome.append(exc)

    second = threading.Thread(target=queued)
    second.start()
    claim.lose()  # its lease is lost while it waits behind the first
    turn.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert [type(o) for o in outcome] == [LeaseLost]
    assert _answered(store, "alerts") == [60.0]  # the first taker's, a minute on: none for the lost step


def test_an_instance_learns_when_its_turn_comes_without_waiting_or_taking_a_slot(store: AzureStore) -> None:
    """The collect step asks for the tenant's turn before it starts a live response: a budget
    the other instances used up is seen (from the table) as a wait, nobody sleeps, nothing is taken."""
    clock = SharedClock()
    first, second = _instances(store, clock, 2, runliveresponse=(10, None))
    assert second.wait_needed("runliveresponse") == 0.0
    for _ in range(10):
        first.acquire("runliveresponse")
    clock.now += 15.0
    assert first.wait_needed("runliveresponse") == pytest.approx(45.0, abs=0.05)
    assert second.wait_needed("runliveresponse") == pytest.approx(45.0, abs=0.05)  # read from the table
    first.hold("runliveresponse", 50.0)
    assert second.wait_needed("runliveresponse") == pytest.approx(50.0, abs=0.05)  # a 429's hold counts too
    assert clock.slept == 0.0
    assert len(_answered(store, "runliveresponse")) == 10  # asking took no slot
    assert first.wait_needed("not-limited") == 0.0
