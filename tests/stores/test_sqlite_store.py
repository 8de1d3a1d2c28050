"""The SQLite store: versions, the work queue and machine leases hold under threads, processes and
SIGKILL, on real database files."""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Barrier as BarrierType
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import pytest

from joedefender.errors import JoeDefenderError
from joedefender.stores import (
    Document,
    SchemaVersionError,
    SqliteStore,
    Store,
    StoreError,
    VersionConflict,
    WorkItem,
)

SPAWN = multiprocessing.get_context("spawn")  # independent worker processes, as in production


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "joedefender.db"


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[SqliteStore]:
    with SqliteStore(db_path, clock=clock) as opened:
        yield opened


def _run_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Start `count` threads at once (behind a barrier) and return their results in index order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    return results


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


# -- documents ---------------------------------------------------------------------------------


def test_the_store_satisfies_the_port(store: SqliteStore) -> None:
    port: Store = store  # mypy checks the structure; this checks it is the same object at runtime
    assert port.pending() == 0


def test_create_get_update_round_trip(store: SqliteStore, clock: FakeClock) -> None:
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


def test_update_from_a_stale_version_conflicts_and_changes_nothing(store: SqliteStore) -> None:
    first = store.create("job", "j", {"n": 0})
    assert first is not None
    second = store.update(first, {"n": 1})
    with pytest.raises(VersionConflict) as raised:
        store.update(first, {"n": 99})
    assert isinstance(raised.value, JoeDefenderError)
    assert raised.value.version == 1
    assert store.get("job", "j") == second


def test_create_of_an_existing_key_returns_none_and_keeps_the_data(store: SqliteStore) -> None:
    assert store.create("alert", "a1", {"by": "first"}) is not None
    assert store.create("alert", "a1", {"by": "second"}) is None
    stored = store.get("alert", "a1")
    assert stored is not None
    assert (stored.version, stored.data) == (1, {"by": "first"})
    assert store.create("job", "a1", {"by": "other kind"}) is not None


def test_list_by_prefix_in_key_order_with_no_wildcards(store: SqliteStore) -> None:
    for key in ["link:b|2", "link:a|1", "link:a_x", "link%a", "linkXa", "other", "link:a|0"]:
        store.create("link", key, {"key": key})
    store.create("job", "link:a|9", {})

    assert [doc.key for doc in store.list("link", "link:a")] == ["link:a_x", "link:a|0", "link:a|1"]
    assert [doc.key for doc in store.list("link", "link%")] == ["link%a"]
    assert [doc.key for doc in store.list("link")] == sorted(
        ["link:b|2", "link:a|1", "link:a_x", "link%a", "linkXa", "other", "link:a|0"]
    )
    assert store.list("link", "nothing") == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"when": object()}, "not JSON serializable"),
        ({"score": math.nan}, "Out of range float"),
        ({"nested": {1: "int key"}}, "keys must be str"),
        ({"items": [{"ok": 1}, {2: "deep"}]}, "keys must be str"),
        (["not", "a", "dict"], "must be a dict"),
    ],
)
def test_data_that_would_not_read_back_is_refused(store: SqliteStore, data: Any, reason: str) -> None:
    with pytest.raises(TypeError, match=reason):
        store.create("job", "j", data)
    assert store.get("job", "j") is None
    doc = store.create("job", "j", {"fine": True})
    assert doc is not None
    with pytest.raises(TypeError, match=reason):
        store.update(doc, data)
    assert store.get("job", "j") == doc


def test_data_is_stored_as_sorted_json(store: SqliteStore, db_path: Path) -> None:
    store.create("job", "j", {"b": 1, "a": [1.5, None, "x"]})
    raw = sqlite3.connect(db_path).execute("SELECT data FROM documents").fetchone()[0]
    assert raw == json.dumps({"a": [1.5, None, "x"], "b": 1}, sort_keys=True, separators=(",", ":"))


def test_history_is_in_time_order(store: SqliteStore, clock: FakeClock) -> None:
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


# -- the file itself -----------------------------------------------------------------------------


def test_reopening_keeps_everything_and_the_schema(db_path: Path) -> None:
    with SqliteStore(db_path) as first:
        first.create("job", "j", {"n": 1})
        first.enqueue("sample:1", 5.0)
        first.append_history("j", "intake", "ok", at=1.0)
        first.acquire("m1", "w1", now=0.0, until=100.0, max_active=5)
    with SqliteStore(db_path) as second:
        doc = second.get("job", "j")
        assert doc is not None
        assert doc.data == {"n": 1}
        assert [item.key for item in second.items()] == ["sample:1"]
        assert len(second.history("j")) == 1
        assert second.holder("m1", now=50.0) == "w1"
    connection = sqlite3.connect(db_path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 1


def test_a_database_from_a_newer_version_is_refused(db_path: Path) -> None:
    SqliteStore(db_path).close()
    connection = sqlite3.connect(db_path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        SqliteStore(db_path)


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a database, " * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        SqliteStore(path)


def test_a_closed_store_refuses_work(db_path: Path) -> None:
    opened = SqliteStore(db_path)
    opened.close()
    with pytest.raises(StoreError, match="closed"):
        opened.get("job", "j")


# -- races between threads -----------------------------------------------------------------------


def test_racing_creates_have_exactly_one_winner(store: SqliteStore) -> None:
    results = _run_threads(16, lambda i: store.create("job", "sample:sha256:ab", {"creator": i}))
    winners = [doc for doc in results if doc is not None]
    assert len(winners) == 1
    assert store.get("job", "sample:sha256:ab") == winners[0]


def test_optimistic_updates_under_contention_lose_no_increment(store: SqliteStore) -> None:
    store.create("meta", "counter", {"count": 0})

    def increment(_: int) -> int:
        conflicts = 0
        for _ in range(25):
            while True:
                doc = store.get("meta", "counter")
                assert doc is not None
                try:
                    store.update(doc, {"count": doc.data["count"] + 1})
                    break
                except VersionConflict:
                    conflicts += 1
        return conflicts

    _run_threads(8, increment)
    final = store.get("meta", "counter")
    assert final is not None
    assert final.data == {"count": 200}
    assert final.version == 201


# -- the work queue ------------------------------------------------------------------------------


def test_claim_takes_the_earliest_due_item_only_when_due(store: SqliteStore) -> None:
    store.enqueue("late", 50.0)
    store.enqueue("early", 20.0)
    assert store.claim("w1", now=10.0, lease_seconds=30) is None

    item = store.claim("w1", now=25.0, lease_seconds=30)
    assert item == WorkItem("early", 20.0, attempts=1, owner="w1", lease_until=55.0, generation=1)
    assert store.claim("w2", now=25.0, lease_seconds=30) is None  # "late" is not due, "early" is held
    second = store.claim("w2", now=50.0, lease_seconds=30)
    assert second is not None
    assert second.key == "late"


def test_enqueue_of_a_queued_key_moves_it_earlier_never_later(store: SqliteStore) -> None:
    store.enqueue("k", 50.0)
    store.enqueue("k", 80.0)
    assert [(i.due_at, i.generation) for i in store.items()] == [(50.0, 2)]
    store.enqueue("k", 30.0)
    assert [(i.due_at, i.generation) for i in store.items()] == [(30.0, 3)]
    assert store.pending() == 1


def test_a_held_lease_stays_held_when_the_key_is_enqueued_again(store: SqliteStore) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=10.0, lease_seconds=30)
    assert item is not None
    store.enqueue("k", 0.0)
    assert store.claim("w2", now=20.0, lease_seconds=30) is None
    assert store.items()[0].owner == "w1"


def test_complete_deletes_the_item(store: SqliteStore) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=1.0, lease_seconds=30)
    assert item is not None
    store.complete(item)
    assert store.pending() == 0
    assert store.next_due() is None


def test_reschedule_releases_the_lease_at_the_new_time(store: SqliteStore) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=1.0, lease_seconds=30)
    assert item is not None
    store.reschedule(item, 120.0)  # later than the lease: the new time wins
    assert store.claim("w2", now=119.0, lease_seconds=30) is None
    again = store.claim("w2", now=120.0, lease_seconds=30)
    assert again is not None
    assert (again.key, again.attempts, again.owner) == ("k", 2, "w2")


def test_an_enqueue_during_processing_survives_complete(store: SqliteStore) -> None:
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
    store: SqliteStore, enqueued_at: float, rescheduled_at: float, expected: float
) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=10.0, lease_seconds=30)
    assert item is not None
    store.enqueue("k", enqueued_at)
    store.reschedule(item, rescheduled_at)
    [left] = store.items()
    assert (left.due_at, left.owner) == (expected, "")


def test_a_lease_expires_and_another_owner_takes_the_item(store: SqliteStore) -> None:
    store.enqueue("k", 0.0)
    first = store.claim("w1", now=100.0, lease_seconds=10)
    assert first is not None
    assert store.claim("w2", now=109.9, lease_seconds=10) is None
    second = store.claim("w2", now=110.0, lease_seconds=10)
    assert second is not None
    assert (second.key, second.owner, second.attempts, second.lease_until) == ("k", "w2", 2, 120.0)


@pytest.mark.parametrize("late_call", ["complete", "reschedule"])
def test_a_lost_lease_cannot_complete_or_reschedule(store: SqliteStore, late_call: str) -> None:
    store.enqueue("k", 0.0)
    first = store.claim("w1", now=100.0, lease_seconds=10)
    assert first is not None
    second = store.claim("w2", now=111.0, lease_seconds=10)
    assert second is not None

    if late_call == "complete":
        store.complete(first)
    else:
        store.reschedule(first, 500.0)
    assert store.items() == [WorkItem("k", 121.0, 2, "w2", 121.0, 1)]  # leased: due when the lease ends
    store.complete(second)
    assert store.pending() == 0


def test_a_lease_lost_to_the_same_owner_is_still_lost(store: SqliteStore) -> None:
    store.enqueue("k", 0.0)
    stale = store.claim("w1", now=100.0, lease_seconds=10)
    fresh = store.claim("w1", now=111.0, lease_seconds=10)
    assert stale is not None
    assert fresh is not None
    store.complete(stale)
    assert store.pending() == 1
    store.complete(fresh)
    assert store.pending() == 0


def test_an_expired_lease_nobody_took_can_still_complete(store: SqliteStore) -> None:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=100.0, lease_seconds=10)
    assert item is not None
    store.complete(item)  # the lease ran out at 110, but no one else claimed: the work stands
    assert store.pending() == 0


def test_next_due_and_pending(store: SqliteStore) -> None:
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


def test_threads_never_share_a_claim(store: SqliteStore) -> None:
    keys = [f"sample:{i:04d}" for i in range(200)]
    for key in keys:
        store.enqueue(key, 0.0)

    def drain(index: int) -> list[str]:
        done = []
        while (item := store.claim(f"thread-{index}", now=1.0, lease_seconds=600)) is not None:
            assert item.attempts == 1
            done.append(item.key)
            store.complete(item)
        return done

    processed = [key for done in _run_threads(8, drain) for key in done]
    assert Counter(processed) == Counter(keys)
    assert store.pending() == 0


def _drain_in_process(path: str, owner: str, barrier: BarrierType, out: str) -> None:
    """A worker process: take items until none is left, recording each one it processed."""
    with SqliteStore(path) as worker:
        barrier.wait(timeout=30)
        done = []
        while (item := worker.claim(owner, now=1.0, lease_seconds=600)) is not None:
            hashlib.sha256(bytes(500_000)).digest()  # some work outside the lock, as a real step does
            worker.append_history(item.key, "processed", owner)
            done.append(item.key)
            worker.complete(item)
    Path(out).write_text(json.dumps(done))


def test_processes_sharing_the_file_process_every_item_exactly_once(db_path: Path, tmp_path: Path) -> None:
    keys = [f"sample:{i:04d}" for i in range(600)]
    with SqliteStore(db_path) as queue:
        for key in keys:
            queue.enqueue(key, 0.0)

    barrier = SPAWN.Barrier(3)
    outputs = [tmp_path / f"worker-{i}.json" for i in range(3)]
    workers = [
        SPAWN.Process(target=_drain_in_process, args=(str(db_path), f"proc-{i}", barrier, str(out)))
        for i, out in enumerate(outputs)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]

    done_by_worker = [json.loads(out.read_text()) for out in outputs]
    assert sum(1 for done in done_by_worker if done) >= 2, "the workers did not overlap: no race was tested"
    processed = [key for done in done_by_worker for key in done]
    assert Counter(processed) == Counter(keys)
    with SqliteStore(db_path) as queue:
        assert queue.pending() == 0
        assert all(len(queue.history(key)) == 1 for key in keys[::37])


# -- machine leases ------------------------------------------------------------------------------


def test_a_machine_lease_is_exclusive_until_released_or_expired(store: SqliteStore) -> None:
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


def test_the_owner_extends_its_own_lease(store: SqliteStore) -> None:
    assert store.acquire("m1", "w1", now=0.0, until=60.0, max_active=1)
    assert store.acquire("m1", "w1", now=50.0, until=200.0, max_active=1)  # at the cap, but already ours
    assert store.holder("m1", now=150.0) == "w1"
    assert store.active(now=150.0) == 1


def test_the_concurrent_session_cap_counts_unexpired_leases(store: SqliteStore) -> None:
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


def test_racing_acquires_respect_the_cap_and_exclusivity(store: SqliteStore) -> None:
    distinct = _run_threads(12, lambda i: store.acquire(f"m{i}", f"w{i}", now=0.0, until=60.0, max_active=3))
    assert sum(distinct) == 3
    assert store.active(now=1.0) == 3

    same = _run_threads(12, lambda i: store.acquire("shared", f"v{i}", now=61.0, until=120.0, max_active=25))
    assert sum(same) == 1
    assert store.holder("shared", now=62.0) == f"v{same.index(True)}"


# -- crashes and forks ---------------------------------------------------------------------------


def _blob_digest(blob: str) -> str:
    return hashlib.sha256(blob.encode()).hexdigest()


def _write_burst(path: str, started: EventType) -> None:
    """Write as fast as possible until killed; every write carries a way to check it is whole."""
    store = SqliteStore(path)
    started.set()
    while True:
        counter = store.get("meta", "counter")
        assert counter is not None
        count = counter.data["count"] + 1
        blob = os.urandom(16_000).hex()
        store.create("blob", f"{count:06d}", {"blob": blob, "sha256": _blob_digest(blob)})
        store.enqueue(f"item-{count:06d}", float(count))
        store.append_history("burst", "write", str(count), blob[:2000])
        store.update(counter, {"count": count, "padding": blob[:4000]})


def test_a_process_killed_mid_write_leaves_a_usable_database(db_path: Path) -> None:
    with SqliteStore(db_path) as setup:
        setup.create("meta", "counter", {"count": 0})
    rounds = random.Random(os.getpid())
    killed_after = 0
    for _ in range(3):
        started = SPAWN.Event()
        writer = SPAWN.Process(target=_write_burst, args=(str(db_path), started))
        writer.start()
        assert started.wait(timeout=20)
        with SqliteStore(db_path) as watcher:
            target = killed_after + rounds.randint(5, 40)

            def far_enough(watcher: SqliteStore = watcher, target: int = target) -> bool:
                doc = watcher.get("meta", "counter")
                return doc is not None and doc.data["count"] >= target

            _wait_for(far_enough)
        assert writer.pid is not None
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(timeout=10)
        assert writer.exitcode == -signal.SIGKILL

        with SqliteStore(db_path) as successor:  # the next process to open the file
            raw = sqlite3.connect(db_path)
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            raw.close()
            counter = successor.get("meta", "counter")
            assert counter is not None
            killed_after = counter.data["count"]
            assert counter.version == killed_after + 1  # data and version moved together
            blobs = successor.list("blob")
            for doc in blobs:
                assert _blob_digest(doc.data["blob"]) == doc.data["sha256"]
            # a killed round may have written its next blob and item, and not yet the counter
            done = [f"{n:06d}" for n in range(1, killed_after + 1)]
            assert [doc.key for doc in blobs] in (done, [*done, f"{killed_after + 1:06d}"])
            assert [item.key for item in successor.items()] in (
                [f"item-{n}" for n in done],
                [f"item-{n}" for n in done] + [f"item-{killed_after + 1:06d}"],
            )
            # ...and it carries on working
            successor.enqueue("after-crash", 0.0)
            item = successor.claim("successor", now=0.5, lease_seconds=30)
            assert item is not None
            assert item.key == "after-crash"
            successor.complete(item)
            mark = successor.get("meta", "successor") or successor.create("meta", "successor", {})
            assert mark is not None
            assert successor.update(mark, {"round": killed_after}).version == mark.version + 1
    assert killed_after >= 15


def _use_inherited_store(store: SqliteStore, parent_connection: sqlite3.Connection) -> None:
    # SQLite forbids using a connection across fork: the child must have opened its own
    assert store._connection() is not parent_connection
    store.create("job", f"child-{os.getpid()}", {"from": "child"})
    store.enqueue("child-item", 0.0)
    store.close()  # closes the child's connections only


def test_a_forked_child_opens_its_own_connections(store: SqliteStore) -> None:
    store.create("job", "parent", {"from": "parent"})
    fork = multiprocessing.get_context("fork")
    child = fork.Process(target=_use_inherited_store, args=(store, store._connection()))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert [doc.key for doc in store.list("job")] == [f"child-{child.pid}", "parent"]
    assert [item.key for item in store.items()] == ["child-item"]
    assert store.create("job", "parent-after", {}) is not None
