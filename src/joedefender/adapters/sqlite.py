"""The embedded store: all ports in one SQLite file, safe to share between threads and processes.

Every write is one `BEGIN IMMEDIATE` transaction, so each check-and-set (a unit of work's commit,
claim, acquire) is atomic across processes, and a process killed at any point leaves the
database as it was before or after that write, never between. WAL keeps readers from blocking
the writer.
"""

from __future__ import annotations

import builtins
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from joedefender.adapters._writes import (
    AppendHistory,
    BufferedWrites,
    Create,
    Enqueue,
    Fence,
    Operation,
    Update,
    Written,
    decode,
)
from joedefender.pipeline.ports import (
    AlreadyExists,
    Document,
    HistoryEntry,
    LeaseLost,
    SchemaVersionError,
    Store,
    StoreError,
    StoreUnavailable,
    VersionConflict,
    WorkItem,
)

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    data JSON NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    at REAL NOT NULL,
    step TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_subject ON history (subject, at, id);
CREATE TABLE IF NOT EXISTS work (
    key TEXT PRIMARY KEY,
    due_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 1,
    token TEXT NOT NULL DEFAULT '',  -- the holding claim's token ('' when free)
    failures INTEGER NOT NULL DEFAULT 0,  -- consecutive failed steps, as the last reschedule said
    -- when a claim can take it: a free item when it is due, a leased one when its lease ends
    ready_at REAL GENERATED ALWAYS AS (CASE WHEN owner = '' THEN due_at ELSE lease_until END) VIRTUAL
);
CREATE INDEX IF NOT EXISTS work_due ON work (due_at);
CREATE INDEX IF NOT EXISTS work_ready ON work (ready_at);
CREATE TABLE IF NOT EXISTS machine_leases (
    machine_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until REAL NOT NULL
);
"""
# What each older schema version needs to become the next one, by the version it becomes.
_MIGRATIONS: dict[int, str] = {
    2: "ALTER TABLE work ADD COLUMN token TEXT NOT NULL DEFAULT ''",  # a claim left by version 1 simply runs out
    3: "ALTER TABLE work ADD COLUMN failures INTEGER NOT NULL DEFAULT 0",
}
# `work.due_at` is NULL while a claim holds the item and nobody re-enqueued it since: the claim
# consumed that due time, so a later enqueue sets its own due time rather than the minimum.


def _document(row: sqlite3.Row) -> Document:
    return decode(row["kind"], row["key"], row["version"], row["data"], row["updated_at"])


def _work_item(row: sqlite3.Row) -> WorkItem:
    return WorkItem(
        key=row["key"],
        due_at=float(row["ready_at"]),  # a leased item shows when it could be claimed again
        attempts=row["attempts"],
        owner=row["owner"],
        lease_until=float(row["lease_until"]),
        generation=row["generation"],
        token=row["token"],
        failures=row["failures"],
    )


class SqliteStore(BufferedWrites, Store):
    """All the ports on one SQLite file, over a small pool of connections.

    A connection is borrowed for one transaction (a unit of work's commit, a claim, one read) and
    given back, so the number of open files is bounded by the pool, not by how many threads ever
    used the store: a webhook served by a thread per request would otherwise leak one per request.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 30.0,
        pool_size: int = 8,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._pool_size = pool_size
        self._lock = threading.Lock()
        # Writers of this process queue here, in order, rather than in SQLite's busy handler,
        # which sleeps and retries (up to 100 ms a round): 50 webhook requests at once would
        # otherwise spend most of their time asleep. Other processes still meet the busy timeout.
        self._writer = threading.Lock()
        self._idle: builtins.list[sqlite3.Connection] = []
        self._inherited: builtins.list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False
        try:
            self._create_schema()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- connections and transactions ---------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for one transaction; kept for the next one when the pool has room."""
        with self._lock:
            if self._closed:
                raise StoreError(f"{self!r} is closed")
            if os.getpid() != self._pid:
                self._forget_parent_connections()
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = self._open()
        healthy = False
        try:
            yield connection
            healthy = not connection.in_transaction
        finally:
            with self._lock:
                keep = healthy and not self._closed and len(self._idle) < self._pool_size
                if keep:
                    self._idle.append(connection)
            if not keep:
                connection.close()

    def _forget_parent_connections(self) -> None:
        """A forked child must not use, nor close, the connections it inherited (SQLite forbids
        both), so they are kept referenced and never touched; the child opens its own. The caller
        holds the lock."""
        self._inherited.extend(self._idle)
        self._idle = []
        self._pid = os.getpid()

    def _open(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: the sqlite3 module opens no transaction of its own; we issue
            # BEGIN IMMEDIATE ourselves so a write takes the lock before it reads.
            connection = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the SQLite store {str(self.path)!r}: {exc}") from exc
        try:
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            connection.close()
            raise self._mapped(exc) from exc
        return connection

    def _mapped(self, exc: sqlite3.Error) -> StoreError:
        """Every SQLite error as the store's own: busy, locked, read-only or a full disk may pass
        (StoreUnavailable); a file that is not a database, or is damaged, will not (StoreError)."""
        if isinstance(exc, sqlite3.OperationalError):
            return StoreUnavailable(f"{self!r}: {exc}")
        return StoreError(f"{self!r} is not a usable SQLite database: {exc}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all."""
        try:
            with self._writer, self._connection() as connection:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                    connection.execute("COMMIT")
                finally:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self._mapped(exc) from exc

    def _read(self, sql: str, parameters: tuple[Any, ...] = ()) -> builtins.list[sqlite3.Row]:
        """A single SELECT, which SQLite runs as one consistent snapshot."""
        try:
            with self._connection() as connection:
                return connection.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise self._mapped(exc) from exc

    def _create_schema(self) -> None:
        with self._write() as db:
            found = db.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self!r} has schema version {found}; this joedefender knows up to "
                    f"{SCHEMA_VERSION}: upgrade joedefender or use another database"
                )
            if found == 0:
                # One statement at a time: executescript would COMMIT our transaction first.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            else:
                for version in range(found + 1, SCHEMA_VERSION + 1):
                    db.execute(_MIGRATIONS[version])
            if found < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the idle connections; one still lent out is closed when it comes back."""
        with self._lock:
            connections, self._idle = self._idle, []
            self._closed = True
            forked = os.getpid() != self._pid
        if not forked:
            for connection in connections:
                connection.close()

    # -- writes: a unit of work is one transaction --------------------------------------------

    def _apply(self, operations: Sequence[Operation]) -> Written:
        now = self._clock()
        written: Written = {}
        with self._write() as db:  # an exception rolls back everything before it
            for operation in operations:
                match operation:
                    case Fence(key, token):
                        held = db.execute(
                            "SELECT 1 FROM work WHERE key = ? AND token = ? AND token != ''", (key, token)
                        ).fetchone()
                        if held is None:
                            raise LeaseLost(key)
                    case Create(kind, key, text):
                        cursor = db.execute(
                            "INSERT INTO documents (kind, key, version, data, updated_at) VALUES (?, ?, 1, ?, ?) "
                            "ON CONFLICT (kind, key) DO NOTHING",
                            (kind, key, text, now),
                        )
                        if cursor.rowcount != 1:
                            raise AlreadyExists(kind, key)
                        written[kind, key] = decode(kind, key, 1, text, now)
                    case Update(kind, key, version, text):
                        cursor = db.execute(
                            "UPDATE documents SET version = version + 1, data = ?, updated_at = ? "
                            "WHERE kind = ? AND key = ? AND version = ?",
                            (text, now, kind, key, version),
                        )
                        if cursor.rowcount != 1:
                            raise VersionConflict(kind, key, version)
                        written[kind, key] = decode(kind, key, version + 1, text, now)
                    case AppendHistory(subject, step, outcome, detail, at):
                        db.execute(
                            "INSERT INTO history (subject, at, step, outcome, detail) VALUES (?, ?, ?, ?, ?)",
                            (subject, now if at is None else at, step, outcome, detail),
                        )
                    case Enqueue(key, due_at):
                        db.execute(
                            "INSERT INTO work (key, due_at) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                            "due_at = CASE WHEN due_at IS NULL THEN excluded.due_at "
                            "ELSE min(due_at, excluded.due_at) END, "
                            "generation = generation + 1",
                            (key, due_at),
                        )
        return written

    # -- StateStore ---------------------------------------------------------------------------

    def get(self, kind: str, key: str) -> Document | None:
        rows = self._read("SELECT * FROM documents WHERE kind = ? AND key = ?", (kind, key))
        return _document(rows[0]) if rows else None

    def list(self, kind: str, prefix: str = "") -> builtins.list[Document]:
        # `key >= prefix` lets the primary key index find the range; substr checks where it ends.
        rows = self._read(
            "SELECT * FROM documents WHERE kind = ? AND key >= ? AND substr(key, 1, ?) = ? ORDER BY key",
            (kind, prefix, len(prefix), prefix),
        )
        return [_document(row) for row in rows]

    def history(self, subject: str) -> builtins.list[HistoryEntry]:
        rows = self._read(
            "SELECT subject, at, step, outcome, detail FROM history WHERE subject = ? ORDER BY at, id",
            (subject,),
        )
        return [HistoryEntry(**dict(row)) for row in rows]

    # -- WorkQueue ----------------------------------------------------------------------------

    def claim(self, owner: str, now: float, lease_seconds: float) -> WorkItem | None:
        if not owner:
            raise ValueError("a claim needs an owner")
        until = float(now + lease_seconds)
        token = secrets.token_hex(16)
        with self._write() as db:
            row = db.execute(
                "SELECT * FROM work WHERE ready_at <= ? ORDER BY ready_at, key LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE work SET owner = ?, lease_until = ?, attempts = attempts + 1, due_at = NULL, token = ? "
                "WHERE key = ?",
                (owner, until, token, row["key"]),
            )
        return replace(_work_item(row), attempts=row["attempts"] + 1, owner=owner, lease_until=until, token=token)

    @staticmethod
    def _lease(item: WorkItem) -> dict[str, Any]:
        """The claim as query parameters: its token identifies it (a free item's token is '')."""
        return {"key": item.key, "token": item.token, "generation": item.generation, "due_at": item.due_at}

    def renew(self, item: WorkItem, now: float, lease_seconds: float) -> WorkItem | None:
        until = float(now + lease_seconds)
        with self._write() as db:
            renewed = db.execute(
                "UPDATE work SET lease_until = :until WHERE key = :key AND token = :token AND token != ''",
                {**self._lease(item), "until": until},
            )
            if renewed.rowcount != 1:
                return None
        return replace(item, lease_until=until)

    def reschedule(self, item: WorkItem, due_at: float, failures: int = 0) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE work SET owner = '', lease_until = 0, token = '', failures = :failures, due_at = CASE "
                "WHEN generation = :generation OR due_at IS NULL THEN :new_due ELSE min(due_at, :new_due) END "
                "WHERE key = :key AND token = :token AND token != ''",
                {**self._lease(item), "new_due": due_at, "failures": failures},
            )

    def complete(self, item: WorkItem) -> None:
        lease = self._lease(item)
        with self._write() as db:
            deleted = db.execute(
                "DELETE FROM work WHERE key = :key AND token = :token AND token != '' AND generation = :generation",
                lease,
            )
            if deleted.rowcount == 0:  # re-enqueued while we held it, or the lease was lost
                db.execute(
                    "UPDATE work SET owner = '', lease_until = 0, token = '', failures = 0, "
                    "due_at = coalesce(due_at, :due_at) "
                    "WHERE key = :key AND token = :token AND token != ''",
                    lease,
                )

    def next_due(self) -> float | None:
        rows = self._read("SELECT min(ready_at) FROM work")
        found: float | None = rows[0][0]
        return None if found is None else float(found)

    def pending(self) -> int:
        count: int = self._read("SELECT count(*) FROM work")[0][0]
        return count

    def items(self) -> builtins.list[WorkItem]:
        rows = self._read("SELECT * FROM work ORDER BY ready_at, key")
        return [_work_item(row) for row in rows]

    # -- MachineLeases ------------------------------------------------------------------------

    def acquire(self, machine_id: str, owner: str, now: float, until: float, max_active: int) -> bool:
        if not owner:
            raise ValueError("a machine lease needs an owner")
        with self._write() as db:
            row = db.execute("SELECT owner, until FROM machine_leases WHERE machine_id = ?", (machine_id,)).fetchone()
            live = row is not None and row["until"] > now
            if live and row["owner"] != owner:
                return False
            if not live:  # a new session: it counts against the tenant's cap
                active = db.execute("SELECT count(*) FROM machine_leases WHERE until > ?", (now,)).fetchone()
                if active[0] >= max_active:
                    return False
                db.execute("DELETE FROM machine_leases WHERE until <= ?", (now,))
            db.execute(
                "INSERT INTO machine_leases (machine_id, owner, until) VALUES (?, ?, ?) "
                "ON CONFLICT (machine_id) DO UPDATE SET owner = excluded.owner, until = excluded.until",
                (machine_id, owner, until),
            )
        return True

    def release(self, machine_id: str, owner: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM machine_leases WHERE machine_id = ? AND owner = ?", (machine_id, owner))

    def holder(self, machine_id: str, now: float) -> str | None:
        rows = self._read("SELECT owner FROM machine_leases WHERE machine_id = ? AND until > ?", (machine_id, now))
        return str(rows[0]["owner"]) if rows else None

    def active(self, now: float) -> int:
        count: int = self._read("SELECT count(*) FROM machine_leases WHERE until > ?", (now,))[0][0]
        return count
