"""What only the SQLite store shows: the file itself, and its guarantees across processes, forks and
SIGKILL. What every store does is in test_store_contract.py."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import signal
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Barrier as BarrierType
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import pytest

from joedefender.adapters.sqlite import SCHEMA_VERSION, SqliteStore
from joedefender.pipeline.ports import SchemaVersionError, StoreError, StoreUnavailable, UnitOfWork
from tests.stores.helpers import FakeClock, wait_for

SPAWN = multiprocessing.get_context("spawn")  # independent worker processes, as in production


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "joedefender.db"


@pytest.fixture
def sqlite_store(db_path: Path, clock: FakeClock) -> Iterator[SqliteStore]:
    with SqliteStore(db_path, clock=clock) as opened:
        yield opened


# -- the file itself -----------------------------------------------------------------------------


def test_data_is_stored_as_sorted_json(sqlite_store: SqliteStore, db_path: Path) -> None:
    sqlite_store.create("job", "j", {"b": 1, "a": [1.5, None, "x"]})
    raw = sqlite3.connect(db_path).execute("SELECT data FROM documents").fetchone()[0]
    assert raw == json.dumps({"a": [1.5, None, "x"], "b": 1}, sort_keys=True, separators=(",", ":"))


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
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_database_from_a_newer_version_is_refused(db_path: Path) -> None:
    SqliteStore(db_path).close()
    connection = sqlite3.connect(db_path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        SqliteStore(db_path)


def test_a_version_1_database_is_upgraded_and_its_claims_run_out(db_path: Path) -> None:
    """Version 1 had no claim tokens: a claim it left cannot be renewed or fence a commit, and
    the item is claimed again once that lease runs out."""
    connection = sqlite3.connect(db_path, isolation_level=None)
    connection.executescript(
        "CREATE TABLE work (key TEXT PRIMARY KEY, due_at REAL, attempts INTEGER NOT NULL DEFAULT 0, "
        "owner TEXT NOT NULL DEFAULT '', lease_until REAL NOT NULL DEFAULT 0, "
        "generation INTEGER NOT NULL DEFAULT 1, ready_at REAL GENERATED ALWAYS AS "
        "(CASE WHEN owner = '' THEN due_at ELSE lease_until END) VIRTUAL);"
        "INSERT INTO work (key, due_at, attempts, owner, lease_until) VALUES ('k', NULL, 1, 'old', 50.0);"
        "PRAGMA user_version = 1;"
    )
    connection.close()
    with SqliteStore(db_path) as store:
        [left] = store.items()
        assert (left.owner, left.token) == ("old", "")
        assert store.renew(left, now=10.0, lease_seconds=100) is None
        assert store.claim("new", now=49.0, lease_seconds=10) is None
        item = store.claim("new", now=50.0, lease_seconds=10)
        assert item is not None
        assert (bool(item.token), item.failures) == (True, 0)
        assert store.renew(item, now=55.0, lease_seconds=10) is not None
    assert sqlite3.connect(db_path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a database, " * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        SqliteStore(path)


def test_a_locked_database_makes_a_commit_unavailable_and_applies_nothing(db_path: Path) -> None:
    with SqliteStore(db_path, busy_timeout=0.1) as store:
        doc = store.create("job", "j", {"n": 0})
        assert doc is not None
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        work = store.unit_of_work()
        work.update(doc, {"n": 1})
        work.append_history("j", "step", "ok")
        work.enqueue("j", 0.0)
        with pytest.raises(StoreUnavailable, match="locked"):
            work.commit()
        other.execute("ROLLBACK")
        other.close()
        assert store.get("job", "j") == doc
        assert (store.history("j"), store.pending()) == ([], 0)
        assert store.update(doc, {"n": 1}).version == 2  # the store works once the lock is gone


# -- processes -----------------------------------------------------------------------------------


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


# -- crashes and forks ---------------------------------------------------------------------------


def _blob_digest(blob: str) -> str:
    return hashlib.sha256(blob.encode()).hexdigest()


def _write_burst(path: str, started: EventType, in_one_unit: bool) -> None:
    """Write rounds as fast as possible until killed, each round either as one unit of work or
    as four immediate writes; every round carries a way to check it is whole."""
    store = SqliteStore(path)
    started.set()
    while True:
        counter = store.get("meta", "counter")
        assert counter is not None
        count = counter.data["count"] + 1
        blob = os.urandom(16_000).hex()
        writes: UnitOfWork | SqliteStore = store.unit_of_work() if in_one_unit else store
        writes.create("blob", f"{count:06d}", {"blob": blob, "sha256": _blob_digest(blob)})
        writes.enqueue(f"item-{count:06d}", float(count))
        writes.append_history("burst", "write", str(count), blob[:2000])
        writes.update(counter, {"count": count, "padding": blob[:4000]})
        if not isinstance(writes, SqliteStore):
            writes.commit()


def _kill_writers_repeatedly(
    db_path: Path,
    check_rounds: Callable[[SqliteStore, list[str]], None],
    *,
    in_one_unit: bool,
) -> None:
    """Start `_write_burst` on the file, SIGKILL it at a random point, and check what the next
    process to open the file finds there; three times over.

    The writer counts its rounds in the document meta/counter, and each round writes a blob
    carrying its own digest. `check_rounds(store, done)` checks the rest of what the rounds
    the counter shows as done (their numbers, as the writers format them) left behind.
    """
    with SqliteStore(db_path) as setup:
        setup.create("meta", "counter", {"count": 0})
    rounds = random.Random(os.getpid())
    killed_after = 0
    for _ in range(3):
        started = SPAWN.Event()
        process = SPAWN.Process(target=_write_burst, args=(str(db_path), started, in_one_unit))
        process.start()
        assert started.wait(timeout=20)
        with SqliteStore(db_path) as watcher:
            target = killed_after + rounds.randint(5, 40)

            def far_enough(watcher: SqliteStore = watcher, target: int = target) -> bool:
                doc = watcher.get("meta", "counter")
                return doc is not None and doc.data["count"] >= target

            wait_for(far_enough)
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        process.join(timeout=10)
        assert process.exitcode == -signal.SIGKILL

        with SqliteStore(db_path) as successor:  # the next process to open the file
            raw = sqlite3.connect(db_path)
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            raw.close()
            counter = successor.get("meta", "counter")
            assert counter is not None
            killed_after = counter.data["count"]
            assert counter.version == killed_after + 1  # data and version moved together
            for doc in successor.list("blob"):
                assert _blob_digest(doc.data["blob"]) == doc.data["sha256"]
            check_rounds(successor, [f"{n:06d}" for n in range(1, killed_after + 1)])

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


def test_a_process_killed_mid_write_leaves_a_usable_database(db_path: Path) -> None:
    def check_rounds(store: SqliteStore, done: list[str]) -> None:
        # a killed round may have written its next blob and item, and not yet the counter
        following = f"{len(done) + 1:06d}"
        assert [doc.key for doc in store.list("blob")] in (done, [*done, following])
        assert [item.key for item in store.items()] in (
            [f"item-{n}" for n in done],
            [f"item-{n}" for n in [*done, following]],
        )

    _kill_writers_repeatedly(db_path, check_rounds, in_one_unit=False)


def test_a_unit_of_work_is_all_or_nothing_across_a_sigkill(db_path: Path) -> None:
    def check_rounds(store: SqliteStore, done: list[str]) -> None:
        # each round is one unit of work: its counter, blob, item and history line land together
        assert [doc.key for doc in store.list("blob")] == done
        assert [item.key for item in store.items()] == [f"item-{n}" for n in done]
        assert [entry.outcome for entry in store.history("burst")] == [str(int(n)) for n in done]

    _kill_writers_repeatedly(db_path, check_rounds, in_one_unit=True)


def _use_inherited_store(store: SqliteStore, parent_connection: sqlite3.Connection) -> None:
    # SQLite forbids using a connection across fork: the child must have opened its own
    with store._connection() as connection:
        assert connection is not parent_connection
    store.create("job", f"child-{os.getpid()}", {"from": "child"})
    store.enqueue("child-item", 0.0)
    store.close()  # closes the child's connections only


def test_a_forked_child_opens_its_own_connections(sqlite_store: SqliteStore) -> None:
    sqlite_store.create("job", "parent", {"from": "parent"})
    fork = multiprocessing.get_context("fork")
    with sqlite_store._connection() as parent_connection:
        pass  # back in the pool, where the child finds it
    child = fork.Process(target=_use_inherited_store, args=(sqlite_store, parent_connection))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert [doc.key for doc in sqlite_store.list("job")] == [f"child-{child.pid}", "parent"]
    assert [item.key for item in sqlite_store.items()] == ["child-item"]
    assert sqlite_store.create("job", "parent-after", {}) is not None
