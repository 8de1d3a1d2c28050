"""The `Store` contract: what every store adapter does alike, run against each of them.

Documents with optimistic versions, the history, units of work (all or nothing), the work queue
with its leases and generations, and machine leases with their cap, under races between threads.
The adapters are listed in conftest.py; what only one adapter can show (files, processes,
SIGKILL) is in that adapter's own test file.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from joedefender.domain.errors import JoeDefenderError
from joedefender.pipeline.ports import (
    AlreadyExists,
    Document,
    HistoryEntry,
    LeaseLost,
    Store,
    StoreError,
    UnitOfWork,
    VersionConflict,
    WorkItem,
)
from tests.stores.helpers import FakeClock, run_threads

# -- documents ---------------------------------------------------------------------------------


def _rounds(store: Store, full: int) -> int:
    """Rounds of a contention test: an Azure Tables call takes milliseconds where SQLite's take
    microseconds, so the Azure store meets the same contention (as many threads) in fewer rounds."""
    return max(4, full // 4) if type(store).__name__ == "AzureStore" else full


def _operations(protocol: type) -> dict[str, inspect.Signature]:
    """The port's operations (its own and its bases'), by name, with their signatures."""
    found: dict[str, inspect.Signature] = {}
    for base in reversed(protocol.__mro__):
        for name, member in vars(base).items():
            if callable(member) and not name.startswith("_") and base is not object:
                found[name] = inspect.signature(member)
    return found


@pytest.mark.parametrize("port", [Store, UnitOfWork], ids=["store", "unit of work"])
def test_the_store_has_every_operation_of_the_port_with_its_parameters(store: Store, port: type) -> None:
    """mypy checks the stores where they are built; this checks each store as the tests run it:
    every operation of the port is there, with the same parameters, kinds and defaults, so a caller
    that names an argument (as the pipeline does) reaches the same parameter on every store."""
    implementation = store if port is Store else store.unit_of_work()
    for name, wanted in _operations(port).items():
        method = getattr(implementation, name, None)
        assert callable(method), f"{type(implementation).__name__} has no {name}"
        given = inspect.signature(method)
        expected = [(p.name, p.kind, p.default) for p in wanted.parameters.values() if p.name != "self"]
        assert [(p.name, p.kind, p.default) for p in given.parameters.values()] == expected, name


def test_create_get_update_round_trip(store: Store, clock: FakeClock) -> None:
    created = store.create("job", "sample:sha256:ab", {"state": "new", "alerts": ["a1"]})
    assert created == Document("job", "sample:sha256:ab", 1, {"state": "new", "alerts": ["a1"]}, 1000.0)
    assert store.get("job", "sample:sha256:ab") == created
    assert store.get("job", "sample:sha256:cd") is None
    assert store.get("alert", "sample:sha256:ab") is None

    clock.now = 1005.0
    updated = store.update(created, {"state": "lookup", "alerts": ["a1", "a2"]})
    assert (updated.version, updated.data, updated.updated_at) == (
        2,
        {"state": "lookup", "alerts": ["a1", "a2"]},
        1005.0,
    )
    assert store.get("job", "sample:sha256:ab") == updated
    assert store.update(updated, {"state": "done"}).version == 3


def test_documents_read_back_as_copies(store: Store) -> None:
    data: dict[str, Any] = {"alerts": ["a1"], "pair": (1, 2)}
    created = store.create("job", "j", data)
    assert created is not None
    data["alerts"].append("changed after the write")
    created.data["alerts"].append("changed after the read")
    stored = store.get("job", "j")
    assert stored is not None
    assert stored.data == {"alerts": ["a1"], "pair": [1, 2]}  # as JSON reads it back
    stored.data["alerts"].clear()
    assert store.list("job")[0].data["alerts"] == ["a1"]


def test_update_from_a_stale_version_conflicts_and_changes_nothing(store: Store) -> None:
    first = store.create("job", "j", {"n": 0})
    assert first is not None
    second = store.update(first, {"n": 1})
    with pytest.raises(VersionConflict) as raised:
        store.update(first, {"n": 99})
    assert isinstance(raised.value, JoeDefenderError)
    assert isinstance(raised.value, StoreError)
    assert (raised.value.kind, raised.value.key, raised.value.version) == ("job", "j", 1)
    assert store.get("job", "j") == second


def test_update_of_a_document_that_is_not_there_conflicts(store: Store) -> None:
    with pytest.raises(VersionConflict):
        store.update(Document("job", "ghost", 1, {}, 0.0), {"n": 1})
    assert store.get("job", "ghost") is None


def test_create_of_an_existing_key_returns_none_and_keeps_the_data(store: Store) -> None:
    assert store.create("alert", "a1", {"by": "first"}) is not None
    assert store.create("alert", "a1", {"by": "second"}) is None
    stored = store.get("alert", "a1")
    assert stored is not None
    assert (stored.version, stored.data) == (1, {"by": "first"})
    assert store.create("job", "a1", {"by": "other kind"}) is not None


def test_list_by_prefix_in_key_order_with_no_wildcards(store: Store) -> None:
    keys = ["link:b|2", "link:a|1", "link:a_x", "link%a", "linkXa", "other", "link:a|0", "link:é", "link:z"]
    for key in keys:
        store.create("link", key, {"key": key})
    store.create("job", "link:a|9", {})

    assert [doc.key for doc in store.list("link", "link:a")] == ["link:a_x", "link:a|0", "link:a|1"]
    assert [doc.key for doc in store.list("link", "link%")] == ["link%a"]
    assert [doc.key for doc in store.list("link")] == sorted(keys)  # code point order: "link:z" < "link:é"
    assert store.list("link", "nothing") == []


_UNREADABLE = [
    ({"when": object()}, "not JSON serializable"),
    ({"score": math.nan}, "Out of range float"),
    ({"nested": {1: "int key"}}, "keys must be str"),
    ({"items": [{"ok": 1}, {2: "deep"}]}, "keys must be str"),
    (["not", "a", "dict"], "must be a dict"),
]


@pytest.mark.parametrize(("data", "reason"), _UNREADABLE)
def test_data_that_would_not_read_back_is_refused(store: Store, data: Any, reason: str) -> None:
    with pytest.raises(TypeError, match=reason):
        store.create("job", "j", data)
    assert store.get("job", "j") is None
    doc = store.create("job", "j", {"fine": True})
    assert doc is not None
    with pytest.raises(TypeError, match=reason):
        store.update(doc, data)
    assert store.get("job", "j") == doc


def test_history_is_in_time_order(store: Store, clock: FakeClock) -> None:
    store.append_history("job:1", "lookup", "unknown", at=20.0)
    store.append_history("job:1", "intake", "accepted", "alert a1", at=10.0)
    store.append_history("job:2", "intake", "accepted", at=15.0)
    store.append_history("job:1", "collect", "started", at=20.0)
    clock.now = 30.0
    store.append_history("job:1", "collect", "ok")

    entries = store.history("job:1")
    assert [(e.at, e.step, e.outcome) for e in entries] == [
        (10.0, "intake", "accepted"),
        (20.0, "lookup", "unknown"),  # ties keep the order they were appended in
        (20.0, "collect", "started"),
        (30.0, "collect", "ok"),
    ]
    assert entries[0].detail == "alert a1"
    assert entries[0].subject == "job:1"
    assert store.history("job:3") == []


def test_a_closed_store_refuses_work(store: Store) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get("job", "j")
    work = store.unit_of_work()
    work.create("job", "j", {})
    with pytest.raises(StoreError, match="closed"):
        work.commit()


# -- races between threads -----------------------------------------------------------------------


def test_racing_creates_have_exactly_one_winner(store: Store) -> None:
    results = run_threads(16, lambda i: store.create("job", "sample:sha256:ab", {"creator": i}))
    winners = [doc for doc in results if doc is not None]
    assert len(winners) == 1
    assert store.get("job", "sample:sha256:ab") == winners[0]


def test_optimistic_updates_under_contention_lose_no_increment(store: Store) -> None:
    store.create("meta", "counter", {"count": 0})

    rounds = _rounds(store, 25)

    def increment(_: int) -> int:
        conflicts = 0
        for _ in range(rounds):
            while True:
                doc = store.get("meta", "counter")
                assert doc is not None
                try:
                    store.update(doc, {"count": doc.data["count"] + 1})
                    break
                except VersionConflict:
                    conflicts += 1
        return conflicts

    run_threads(8, increment)
    final = store.get("meta", "counter")
    assert final is not None
    assert final.data == {"count": 8 * rounds}
    assert final.version == 8 * rounds + 1


# -- units of work -------------------------------------------------------------------------------


def _a_step(store: Store) -> tuple[Document, UnitOfWork]:
    """A document at version 1, and a unit of work that writes one of each kind of thing."""
    existing = store.create("job", "j", {"n": 0})
    assert existing is not None
    work = store.unit_of_work()
    work.create("job", "new", {"n": 1})
    work.update(existing, {"n": 2})
    work.append_history("j", "step", "ok", "detail")
    work.enqueue("j", 5.0)
    return existing, work


def test_nothing_of_a_unit_of_work_is_visible_before_commit(store: Store) -> None:
    existing, work = _a_step(store)
    assert store.get("job", "new") is None
    assert store.get("job", "j") == existing
    assert store.list("job") == [existing]
    assert store.history("j") == []
    assert (store.pending(), store.items(), store.next_due()) == (0, [], None)

    work.commit()
    assert store.get("job", "new") is not None
    assert store.history("j") == [HistoryEntry("j", 1000.0, "step", "ok", "detail")]
    assert store.items() == [WorkItem("j", 5.0, attempts=0, owner="", lease_until=0.0, generation=1, token="")]


def test_commit_returns_the_documents_written_at_their_new_versions(store: Store, clock: FakeClock) -> None:
    _, work = _a_step(store)
    clock.now = 1010.0
    written = work.commit()

    assert dict(written) == {  # the documents only, whatever else the unit of work wrote
        ("job", "new"): Document("job", "new", 1, {"n": 1}, 1010.0),
        ("job", "j"): Document("job", "j", 2, {"n": 2}, 1010.0),
    }
    assert store.get("job", "new") == written["job", "new"]
    assert store.get("job", "j") == written["job", "j"]

    again = store.unit_of_work()  # what a commit returns is what the next step updates from
    again.update(written["job", "j"], {"n": 3})
    assert again.commit()["job", "j"].version == 3


def test_a_unit_of_work_happens_at_the_time_of_its_commit(store: Store, clock: FakeClock) -> None:
    work = store.unit_of_work()
    work.create("job", "j", {})
    work.append_history("j", "step", "at the commit")
    work.append_history("j", "step", "when it says", at=500.0)
    clock.now = 1042.0
    assert work.commit()["job", "j"].updated_at == 1042.0
    assert [(e.at, e.outcome) for e in store.history("j")] == [(500.0, "when it says"), (1042.0, "at the commit")]


@pytest.mark.parametrize("position", ["first", "middle", "last"])
@pytest.mark.parametrize("failure", ["stale update", "existing create"])
def test_a_conflict_applies_nothing_of_the_unit_of_work(store: Store, failure: str, position: str) -> None:
    stale = store.create("job", "contested", {"n": 0})
    assert stale is not None
    contested = store.update(stale, {"n": 1})  # someone else's update, after our read
    store.create("alert", "taken", {"by": "someone else"})
    other = store.create("job", "other", {"n": 0})
    assert other is not None
    store.enqueue("queued", 50.0)
    store.append_history("j", "before", "ok", at=1.0)
    queue_before, history_before = store.items(), store.history("j")

    work = store.unit_of_work()
    fine: list[Callable[[], None]] = [
        lambda: work.create("job", "new", {"n": 1}),
        lambda: work.update(other, {"n": 1}),
        lambda: work.append_history("j", "step", "ok"),
        lambda: work.enqueue("queued", 10.0),  # would move it earlier
        lambda: work.enqueue("fresh", 0.0),
    ]
    expected: type[VersionConflict]
    if failure == "stale update":
        failing, expected = (lambda: work.update(stale, {"n": 99})), VersionConflict
    else:
        failing, expected = (lambda: work.create("alert", "taken", {"by": "us"})), AlreadyExists
    at = {"first": 0, "middle": 2, "last": len(fine)}[position]
    for operation in [*fine[:at], failing, *fine[at:]]:
        operation()

    with pytest.raises(VersionConflict) as raised:
        work.commit()
    assert type(raised.value) is expected

    assert store.get("job", "new") is None
    assert store.get("job", "other") == other
    assert store.get("job", "contested") == contested
    taken = store.get("alert", "taken")
    assert taken is not None
    assert taken.data == {"by": "someone else"}
    assert store.history("j") == history_before
    assert store.items() == queue_before


def test_racing_units_of_work_creating_one_key_have_exactly_one_winner(store: Store) -> None:
    def attempt(index: int) -> dict[tuple[str, str], Document] | AlreadyExists:
        work = store.unit_of_work()
        work.create("job", "sample", {"creator": index})
        work.append_history("sample", "created", str(index))
        work.enqueue(f"by-{index}", 0.0)
        try:
            return dict(work.commit())
        except AlreadyExists as exc:
            return exc

    results = run_threads(16, attempt)
    losers = [result for result in results if isinstance(result, AlreadyExists)]
    assert {(exc.kind, exc.key) for exc in losers} == {("job", "sample")}
    [winner] = [index for index, result in enumerate(results) if not isinstance(result, AlreadyExists)]
    stored = store.get("job", "sample")
    assert stored is not None
    assert stored == results[winner]["job", "sample"]
    assert stored.data == {"creator": winner}
    assert [entry.outcome for entry in store.history("sample")] == [str(winner)]
    assert [item.key for item in store.items()] == [f"by-{winner}"]


def test_units_of_work_under_contention_lose_nothing(store: Store) -> None:
    store.create("meta", "counter", {"count": 0})

    rounds = _rounds(store, 25)

    def increment(index: int) -> None:
        for _ in range(rounds):
            while True:
                doc = store.get("meta", "counter")
                assert doc is not None
                count = doc.data["count"] + 1
                work = store.unit_of_work()
                work.update(doc, {"count": count})
                work.append_history("counter", "increment", str(count))
                work.enqueue(f"count-{count:03d}", float(count))
                try:
                    work.commit()
                    break
                except VersionConflict:
                    continue

    run_threads(8, increment)
    final = store.get("meta", "counter")
    assert final is not None
    total = 8 * rounds
    assert (final.data, final.version) == ({"count": total}, total + 1)
    assert [entry.outcome for entry in store.history("counter")] == [str(n) for n in range(1, total + 1)]
    assert [item.key for item in store.items()] == [f"count-{n:03d}" for n in range(1, total + 1)]


def test_enqueue_in_a_unit_of_work_behaves_as_the_immediate_enqueue(store: Store) -> None:
    def enqueue_both(due_at: float) -> None:
        store.enqueue("immediate", due_at)
        work = store.unit_of_work()
        work.enqueue("buffered", due_at)
        work.commit()

    def both_alike() -> tuple[float, int, str, float, int]:
        by_key = {i.key: (i.due_at, i.attempts, i.owner, i.lease_until, i.generation) for i in store.items()}
        assert by_key["immediate"] == by_key["buffered"]
        return by_key["immediate"]

    enqueue_both(50.0)
    enqueue_both(80.0)  # never later
    assert both_alike() == (50.0, 0, "", 0.0, 2)
    enqueue_both(30.0)  # but earlier
    assert both_alike() == (30.0, 0, "", 0.0, 3)

    claimed = [store.claim("w1", now=40.0, lease_seconds=100) for _ in range(2)]
    assert both_alike() == (140.0, 1, "w1", 140.0, 3)
    enqueue_both(60.0)  # while leased: the lease stays held
    assert both_alike() == (140.0, 1, "w1", 140.0, 4)
    for item in claimed:
        assert item is not None
        store.complete(item)  # re-enqueued since the claim: only the lease goes
    assert both_alike() == (60.0, 1, "", 0.0, 4)

    claimed = [store.claim("w2", now=60.0, lease_seconds=100) for _ in range(2)]
    enqueue_both(400.0)
    for item in claimed:
        assert item is not None
        store.reschedule(item, 500.0)
    assert both_alike() == (400.0, 2, "", 0.0, 5)


def test_a_unit_of_work_commits_once(store: Store) -> None:
    empty = store.unit_of_work()
    assert dict(empty.commit()) == {}
    with pytest.raises(StoreError, match="committed"):
        empty.commit()

    work = store.unit_of_work()
    work.create("job", "j", {"n": 1})
    doc = work.commit()["job", "j"]
    with pytest.raises(StoreError, match="committed"):
        work.commit()
    with pytest.raises(StoreError, match="committed"):
        work.create("job", "after", {})
    with pytest.raises(StoreError, match="committed"):
        work.enqueue("after", 0.0)
    assert store.get("job", "after") is None
    assert store.pending() == 0

    store.update(doc, {"n": 2})
    failed = store.unit_of_work()
    failed.update(doc, {"n": 3})
    with pytest.raises(VersionConflict):
        failed.commit()
    with pytest.raises(StoreError, match="committed"):  # a failed unit of work is not tried again
        failed.commit()


def test_a_unit_of_work_writes_a_document_once(store: Store) -> None:
    doc = store.create("job", "j", {"n": 0})
    assert doc is not None
    work = store.unit_of_work()
    work.update(doc, {"n": 1})
    with pytest.raises(ValueError, match="twice"):
        work.update(doc, {"n": 2})
    with pytest.raises(ValueError, match="twice"):
        work.create("job", "j", {})
    work.create("alert", "j", {})  # another kind, another document
    assert set(work.commit()) == {("job", "j"), ("alert", "j")}


@pytest.mark.parametrize(("data", "reason"), _UNREADABLE)
def test_a_unit_of_work_refuses_unreadable_data_when_it_is_added(store: Store, data: Any, reason: str) -> None:
    doc = store.create("job", "j", {"fine": True})
    assert doc is not None
    work = store.unit_of_work()
    with pytest.raises(TypeError, match=reason):
        work.create("job", "new", data)
    with pytest.raises(TypeError, match=reason):
        work.update(doc, data)
    work.append_history("j", "step", "ok")
    assert dict(work.commit()) == {}  # the refused writes were never added
    assert store.get("job", "new") is None
    assert store.get("job", "j") == doc
    assert len(store.history("j")) == 1


def test_a_unit_of_work_keeps_the_data_as_it_was_added(store: Store) -> None:
    data: dict[str, Any] = {"alerts": ["a1"]}
    work = store.unit_of_work()
    work.create("job", "j", data)
    data["alerts"].append("changed before the commit")
    assert work.commit()["job", "j"].data == {"alerts": ["a1"]}
    stored = store.get("job", "j")
    assert stored is not None
    assert stored.data == {"alerts": ["a1"]}


# -- the work queue ------------------------------------------------------------------------------


def test_claim_takes_the_earliest_due_item_only_when_due(store: Store) -> None:
    store.enqueue("late", 50.0)
    store.enqueue("early", 20.0)
    assert store.claim("w1", now=10.0, lease_seconds=30) is None

    item = store.claim("w1", now=25.0, lease_seconds=30)
    assert item is not None
    assert item == WorkItem("early", 20.0, attempts=1, owner="w1", lease_until=55.0, generation=1, token=item.token)
    assert store.claim("w2", now=25.0, lease_seconds=30) is None  # "late" is not due, "early" is held
    second = store.claim("w2", now=50.0, lease_seconds=30)
    assert second is not None
    assert second.key == "late"


def test_items_due_at_the_same_time_are_claimed_in_key_order(store: Store) -> None:
    for key in ["c", "a", "b"]:
        store.enqueue(key, 5.0)
    claimed = [store.claim("w1", now=5.0, lease_seconds=30) for _ in range(3)]
    assert [item.key for item in claimed if item is not None] == ["a", "b", "c"]


def test_claims_need_an_owner(store: Store) -> None:
    store.enqueue("k", 0.0)
    with pytest.raises(ValueError, match="owner"):
        store.claim("", now=1.0, lease_seconds=30)
    with pytest.raises(ValueError, match="owner"):
        store.acquire("m1", "", now=0.0, until=60.0, max_active=5)
    assert store.items()[0].owner == ""


def test_enqueue_of_a_queued_key_moves_it_earlier_never_later(store: Store) -> None:
    store.enqueue("k", 50.0)
    store.enqueue("k", 80.0)
    assert [(i.due_at, i.generation) for i in store.items()] == [(50.0, 2)]
    store.enqueue("k", 30.0)
    assert [(i.due_at, i.generation) for i in store.items()] == [(30.0, 3)]
    assert store.pending() == 1


def test_a_held_lease_stays_held_when_the_key_is_enqueued_again(store: Store) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=10.0, lease_seconds=30)
    assert item is not None
    store.enqueue("k", 0.0)
    assert store.claim("w2", now=20.0, lease_seconds=30) is None
    assert store.items()[0].owner == "w1"


def test_complete_deletes_the_item(store: Store) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=1.0, lease_seconds=30)
    assert item is not None
    store.complete(item)
    assert store.pending() == 0
    assert store.next_due() is None


def test_reschedule_releases_the_lease_at_the_new_time(store: Store) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=1.0, lease_seconds=30)
    assert item is not None
    store.reschedule(item, 120.0)  # later than the lease: the new time wins
    assert store.claim("w2", now=119.0, lease_seconds=30) is None
    again = store.claim("w2", now=120.0, lease_seconds=30)
    assert again is not None
    assert (again.key, again.attempts, again.owner) == ("k", 2, "w2")


def test_a_reschedule_keeps_the_failures_it_is_given_for_the_next_claim(store: Store) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=1.0, lease_seconds=30)
    assert item is not None
    assert item.failures == 0
    store.reschedule(item, 10.0, failures=2)  # the step failed, the second time in a row
    assert [i.failures for i in store.items()] == [2]
    again = store.claim("w2", now=10.0, lease_seconds=30)
    assert again is not None
    assert again.failures == 2
    renewed = store.renew(again, now=11.0, lease_seconds=30)
    assert renewed is not None
    assert renewed.failures == 2
    store.enqueue("k", 50.0)  # re-enqueued while held: the count stays the item's
    store.reschedule(renewed, 40.0, failures=3)
    third = store.claim("w1", now=40.0, lease_seconds=30)
    assert third is not None
    assert third.failures == 3
    store.reschedule(third, 60.0)  # this step did not fail: the count starts again
    fourth = store.claim("w1", now=60.0, lease_seconds=30)
    assert fourth is not None
    assert fourth.failures == 0
    store.reschedule(fourth, 70.0, failures=1)
    fifth = store.claim("w1", now=70.0, lease_seconds=30)
    assert fifth is not None
    store.enqueue("k", 80.0)
    store.complete(fifth)  # re-enqueued meanwhile: released, its count back to none
    assert [(i.due_at, i.failures) for i in store.items()] == [(80.0, 0)]


def test_an_enqueue_during_processing_survives_complete(store: Store) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=10.0, lease_seconds=30)
    assert item is not None
    store.enqueue("k", 15.0)  # say, a new alert joined the job while w1 worked on it
    store.complete(item)

    [left] = store.items()
    assert (left.key, left.due_at, left.owner, left.generation) == ("k", 15.0, "", 2)
    assert store.claim("w2", now=14.0, lease_seconds=30) is None
    again = store.claim("w2", now=15.0, lease_seconds=30)
    assert again is not None
    store.complete(again)
    assert store.pending() == 0


@pytest.mark.parametrize(("enqueued_at", "rescheduled_at", "expected"), [(15.0, 300.0, 15.0), (300.0, 15.0, 15.0)])
def test_an_enqueue_during_processing_survives_reschedule(
    store: Store, enqueued_at: float, rescheduled_at: float, expected: float
) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=10.0, lease_seconds=30)
    assert item is not None
    store.enqueue("k", enqueued_at)
    store.reschedule(item, rescheduled_at)
    [left] = store.items()
    assert (left.due_at, left.owner) == (expected, "")


def test_a_lease_expires_and_another_owner_takes_the_item(store: Store) -> None:
    store.enqueue("k", 0.0)
    first = store.claim("w1", now=100.0, lease_seconds=10)
    assert first is not None
    assert store.claim("w2", now=109.9, lease_seconds=10) is None
    second = store.claim("w2", now=110.0, lease_seconds=10)
    assert second is not None
    assert (second.key, second.owner, second.attempts, second.lease_until) == ("k", "w2", 2, 120.0)


@pytest.mark.parametrize("late_call", ["complete", "reschedule"])
def test_a_lost_lease_cannot_complete_or_reschedule(store: Store, late_call: str) -> None:
    store.enqueue("k", 0.0)
    first = store.claim("w1", now=100.0, lease_seconds=10)
    assert first is not None
    second = store.claim("w2", now=111.0, lease_seconds=10)
    assert second is not None

    if late_call == "complete":
        store.complete(first)
    else:
        store.reschedule(first, 500.0)
    assert store.items() == [WorkItem("k", 121.0, 2, "w2", 121.0, 1, second.token)]  # leased: due when it ends
    store.complete(second)
    assert store.pending() == 0


def test_a_lease_lost_to_the_same_owner_is_still_lost(store: Store) -> None:
    store.enqueue("k", 0.0)
    stale = store.claim("w1", now=100.0, lease_seconds=10)
    fresh = store.claim("w1", now=111.0, lease_seconds=10)
    assert stale is not None
    assert fresh is not None
    store.complete(stale)
    assert store.pending() == 1
    store.complete(fresh)
    assert store.pending() == 0


def test_an_expired_lease_nobody_took_can_still_complete(store: Store) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=100.0, lease_seconds=10)
    assert item is not None
    store.complete(item)  # the lease ran out at 110, but no one else claimed: the work stands
    assert store.pending() == 0


def test_next_due_and_pending(store: Store) -> None:
    assert (store.next_due(), store.pending()) == (None, 0)
    store.enqueue("a", 50.0)
    store.enqueue("b", 20.0)
    assert (store.next_due(), store.pending()) == (20.0, 2)

    item = store.claim("w1", now=30.0, lease_seconds=100)
    assert item is not None
    assert item.key == "b"
    assert (store.next_due(), store.pending()) == (50.0, 2)  # "b" is leased until 130
    store.enqueue("b", 40.0)
    assert store.next_due() == 50.0  # still leased, whatever its new due time

    later = store.claim("w1", now=60.0, lease_seconds=100)
    assert later is not None
    assert store.next_due() == 130.0  # only leased items: when the first lease runs out
    store.complete(later)
    store.complete(item)
    assert (store.next_due(), store.pending()) == (40.0, 1)


def test_threads_never_share_a_claim(store: Store) -> None:
    keys = [f"sample:{i:04d}" for i in range(_rounds(store, 200))]
    for key in keys:
        store.enqueue(key, 0.0)

    def drain(index: int) -> list[str]:
        done = []
        while (item := store.claim(f"thread-{index}", now=1.0, lease_seconds=600)) is not None:
            assert item.attempts == 1
            done.append(item.key)
            store.complete(item)
        return done

    processed = [key for done in run_threads(8, drain) for key in done]
    assert Counter(processed) == Counter(keys)
    assert store.pending() == 0


# -- lease renewal and fencing -------------------------------------------------------------------


def test_every_claim_has_a_token_of_its_own(store: Store) -> None:
    for key in ("a", "b"):
        store.enqueue(key, 0.0)
    first = store.claim("w1", now=1.0, lease_seconds=10)
    other = store.claim("w1", now=1.0, lease_seconds=10)
    assert first is not None
    assert other is not None
    assert first.token
    assert other.token
    assert first.token != other.token
    again = store.claim("w1", now=20.0, lease_seconds=10)  # the same owner, after the lease ran out
    assert again is not None
    assert again.key == first.key
    assert again.token not in (first.token, other.token)
    assert {item.key: item.token for item in store.items()} == {"a": again.token, "b": other.token}
    store.reschedule(other, 100.0)
    assert {item.key: item.token for item in store.items()} == {"a": again.token, "b": ""}  # free: no token


def test_renew_extends_the_lease_and_keeps_the_token(store: Store) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=100.0, lease_seconds=10)
    assert item is not None
    renewed = store.renew(item, now=108.0, lease_seconds=10)
    assert renewed == WorkItem("k", item.due_at, 1, "w1", 118.0, item.generation, item.token)
    assert store.claim("w2", now=115.0, lease_seconds=10) is None  # the old lease would have run out at 110
    assert store.next_due() == 118.0
    assert renewed is not None
    assert store.items() == [replace(renewed, due_at=118.0)]  # leased: due when the lease ends
    assert store.renew(renewed, now=116.0, lease_seconds=10) == WorkItem(
        "k", item.due_at, 1, "w1", 126.0, item.generation, item.token
    )
    taken = store.claim("w2", now=126.0, lease_seconds=10)
    assert taken is not None
    assert (taken.owner, taken.attempts) == ("w2", 2)


def test_renew_from_the_item_as_claimed_or_as_renewed_alike(store: Store) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=100.0, lease_seconds=10)
    assert item is not None
    assert store.renew(item, now=105.0, lease_seconds=10) is not None
    renewed = store.renew(item, now=109.0, lease_seconds=10)  # the token is what counts
    assert renewed is not None
    assert renewed.lease_until == 119.0


@pytest.mark.parametrize("lost_by", ["another claim", "complete", "reschedule"])
def test_a_lost_lease_cannot_be_renewed(store: Store, lost_by: str) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=100.0, lease_seconds=10)
    assert item is not None
    if lost_by == "another claim":
        taker = store.claim("w2", now=111.0, lease_seconds=10)
        assert taker is not None
    elif lost_by == "complete":
        store.enqueue("k", 0.0)  # re-enqueued: complete keeps the item, but the claim ends
        store.complete(item)
    else:
        store.reschedule(item, 500.0)
    before = store.items()
    assert store.renew(item, now=112.0, lease_seconds=100) is None
    assert store.items() == before  # and nothing changed


def test_an_expired_lease_nobody_took_can_still_be_renewed(store: Store) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=100.0, lease_seconds=10)
    assert item is not None
    renewed = store.renew(item, now=130.0, lease_seconds=10)
    assert renewed is not None
    assert renewed.lease_until == 140.0
    assert store.claim("w2", now=135.0, lease_seconds=10) is None


def _two_claims(store: Store) -> tuple[WorkItem, WorkItem]:
    """Items "a" and "b", both claimed by w1 at 1 for 10 s."""
    store.enqueue("a", 0.0)
    store.enqueue("b", 0.0)
    a = store.claim("w1", now=1.0, lease_seconds=10)
    b = store.claim("w1", now=1.0, lease_seconds=10)
    assert a is not None
    assert b is not None
    return a, b


def test_a_renewed_claim_completes_and_reschedules_as_claimed(store: Store) -> None:
    a, b = _two_claims(store)
    assert store.renew(a, now=9.0, lease_seconds=10) is not None
    assert store.renew(b, now=9.0, lease_seconds=10) is not None
    store.enqueue("b", 50.0)  # re-enqueued while held: complete only releases the lease
    store.complete(a)
    store.complete(b)
    assert [(i.key, i.due_at, i.owner, i.token) for i in store.items()] == [("b", 50.0, "", "")]
    again = store.claim("w1", now=50.0, lease_seconds=10)
    assert again is not None
    assert store.renew(again, now=55.0, lease_seconds=10) is not None
    store.reschedule(again, 80.0)
    assert [(i.key, i.due_at, i.owner) for i in store.items()] == [("b", 80.0, "")]


def _fenced_step(store: Store, item: WorkItem) -> UnitOfWork:
    """A step's unit of work, fenced with its claim: writes of every kind."""
    existing = store.get("job", "j")
    assert existing is not None
    work = store.unit_of_work()
    work.fence(item)
    work.create("job", "new", {"n": 1})
    work.update(existing, {"n": 2})
    work.append_history("j", "step", "ok")
    work.enqueue("next", 5.0)
    return work


def test_a_fenced_unit_of_work_commits_while_the_claim_holds(store: Store) -> None:
    store.create("job", "j", {"n": 0})
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=100.0, lease_seconds=10)
    assert item is not None
    renewed = store.renew(item, now=108.0, lease_seconds=10)
    assert renewed is not None
    assert set(_fenced_step(store, item).commit()) == {("job", "new"), ("job", "j")}
    late = store.unit_of_work()  # the lease ran out, but nobody claimed the item since
    late.fence(renewed)
    late.append_history("j", "step", "late")
    late.commit()
    assert [entry.outcome for entry in store.history("j")] == ["ok", "late"]
    assert {i.key for i in store.items()} == {"k", "next"}


@pytest.mark.parametrize("lost_by", ["another claim", "complete", "reschedule", "never claimed"])
def test_a_fenced_unit_of_work_applies_nothing_once_the_lease_is_lost(store: Store, lost_by: str) -> None:
    doc = store.create("job", "j", {"n": 0})
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=100.0, lease_seconds=10)
    assert item is not None
    if lost_by == "another claim":
        assert store.claim("w2", now=111.0, lease_seconds=10) is not None
    elif lost_by == "complete":
        store.enqueue("k", 0.0)
        store.complete(item)
    elif lost_by == "reschedule":
        store.reschedule(item, 500.0)
    else:
        store.reschedule(item, 500.0)
        [item] = store.items()  # an item as queued: no claim's token
    queued = store.items()

    with pytest.raises(LeaseLost) as raised:
        _fenced_step(store, item).commit()
    assert isinstance(raised.value, StoreError)
    assert raised.value.key == "k"
    assert store.get("job", "new") is None
    assert store.get("job", "j") == doc
    assert store.history("j") == []
    assert store.items() == queued

    only_the_fence = store.unit_of_work()  # a fenced commit checks even when it writes nothing
    only_the_fence.fence(item)
    with pytest.raises(LeaseLost):
        only_the_fence.commit()


def test_a_fence_checks_the_claim_of_its_own_key_only(store: Store) -> None:
    a, b = _two_claims(store)
    store.complete(b)  # b's claim ends; a's still holds
    work = store.unit_of_work()
    work.fence(a)
    work.append_history("a", "step", "ok")
    work.commit()
    forged = store.unit_of_work()  # a's key with b's token: not a's claim
    forged.fence(WorkItem("a", a.due_at, a.attempts, a.owner, a.lease_until, a.generation, b.token))
    forged.append_history("a", "step", "forged")
    with pytest.raises(LeaseLost):
        forged.commit()
    assert [entry.outcome for entry in store.history("a")] == ["ok"]


def test_only_one_of_racing_claims_after_expiry_can_commit_fenced(store: Store) -> None:
    store.enqueue("k", 0.0)
    stale = store.claim("w0", now=0.0, lease_seconds=10)
    assert stale is not None

    def take_and_commit(index: int) -> bool:
        item = store.claim(f"w{index + 1}", now=20.0, lease_seconds=100)
        work = store.unit_of_work()
        work.fence(item or stale)
        work.append_history("k", "step", f"w{index + 1}")
        try:
            work.commit()
        except LeaseLost:
            return False
        return True

    committed = run_threads(8, take_and_commit)
    assert sum(committed) == 1
    [entry] = store.history("k")
    assert entry.outcome == f"w{committed.index(True) + 1}"


# -- machine leases ------------------------------------------------------------------------------


def test_a_machine_lease_is_exclusive_until_released_or_expired(store: Store) -> None:
    assert store.acquire("m1", "w1", now=0.0, until=60.0, max_active=25)
    assert not store.acquire("m1", "w2", now=10.0, until=70.0, max_active=25)
    assert store.holder("m1", now=10.0) == "w1"

    store.release("m1", "w2")  # not w2's to release
    assert store.holder("m1", now=10.0) == "w1"
    store.release("m1", "w1")
    assert store.holder("m1", now=10.0) is None
    assert store.acquire("m1", "w2", now=10.0, until=70.0, max_active=25)

    assert store.holder("m1", now=70.0) is None  # expired
    assert store.acquire("m1", "w3", now=70.0, until=130.0, max_active=25)
    assert store.holder("m1", now=80.0) == "w3"


def test_the_owner_extends_its_own_lease(store: Store) -> None:
    assert store.acquire("m1", "w1", now=0.0, until=60.0, max_active=1)
    assert store.acquire("m1", "w1", now=50.0, until=200.0, max_active=1)  # at the cap, but already ours
    assert store.holder("m1", now=150.0) == "w1"
    assert store.active(now=150.0) == 1


def test_the_concurrent_session_cap_counts_unexpired_leases(store: Store) -> None:
    for machine in ("m1", "m2"):
        assert store.acquire(machine, "w1", now=0.0, until=60.0, max_active=2)
    assert not store.acquire("m3", "w2", now=10.0, until=60.0, max_active=2)
    assert store.active(now=10.0) == 2
    assert store.holder("m3", now=10.0) is None

    store.release("m1", "w1")
    assert store.acquire("m3", "w2", now=10.0, until=60.0, max_active=2)
    assert store.active(now=60.0) == 0  # both expired
    assert store.acquire("m4", "w2", now=60.0, until=100.0, max_active=2)
    assert store.acquire("m5", "w2", now=60.0, until=100.0, max_active=2)
    assert store.active(now=60.0) == 2


def test_racing_acquires_respect_the_cap_and_exclusivity(store: Store) -> None:
    distinct = run_threads(12, lambda i: store.acquire(f"m{i}", f"w{i}", now=0.0, until=60.0, max_active=3))
    assert sum(distinct) == 3
    assert store.active(now=1.0) == 3

    same = run_threads(12, lambda i: store.acquire("shared", f"v{i}", now=61.0, until=120.0, max_active=25))
    assert sum(same) == 1
    assert store.holder("shared", now=62.0) == f"v{same.index(True)}"
