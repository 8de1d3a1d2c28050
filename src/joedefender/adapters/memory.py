"""All the storage ports in memory, with the SQLite store's semantics: for fast tests of the steps.

One lock serialises every operation, which makes each of them (a unit of work's commit, a claim,
an acquire) atomic between threads, as a transaction is in SQLite. Documents are kept as the
same JSON text, so data reads back exactly as it would from a file, and no caller shares a dict
with the store. Nothing survives the process.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from joedefender.adapters._queue import QueueEntry
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
    Store,
    StoreError,
    VersionConflict,
    WorkItem,
)


@dataclass(slots=True)
class _Record:
    version: int
    text: str
    updated_at: float


class MemoryStore(BufferedWrites, Store):
    """Documents, history, the work queue and machine leases in dicts, behind one lock."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._documents: dict[tuple[str, str], _Record] = {}
        self._history: dict[str, builtins.list[tuple[float, int, HistoryEntry]]] = {}
        self._appended = 0  # orders history lines of the same time as they were appended
        self._work: dict[str, QueueEntry] = {}
        self._machines: dict[str, tuple[str, float]] = {}  # machine id -> (owner, until)
        self._closed = False

    def __repr__(self) -> str:
        return "MemoryStore()"

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self!r} is closed")

    # -- writes: a unit of work is one turn of the lock ---------------------------------------

    def _apply(self, operations: Sequence[Operation]) -> Written:
        with self._lock:
            self._check_open()
            # Check everything before changing anything: a unit of work writes each document
            # at most once, so no operation's check depends on another's write.
            for operation in operations:
                match operation:
                    case Fence(key, token) if not self._holds(key, token):
                        raise LeaseLost(key)
                    case Create(kind, key) if self._version(kind, key):
                        raise AlreadyExists(kind, key)
                    case Update(kind, key, version) if self._version(kind, key) != version:
                        raise VersionConflict(kind, key, version)
            now = self._clock()
            written: Written = {}
            for operation in operations:
                match operation:
                    case Create(kind, key, text):
                        self._documents[kind, key] = _Record(1, text, now)
                        written[kind, key] = decode(kind, key, 1, text, now)
                    case Update(kind, key, version, text):
                        self._documents[kind, key] = _Record(version + 1, text, now)
                        written[kind, key] = decode(kind, key, version + 1, text, now)
                    case AppendHistory(subject, step, outcome, detail, at):
                        when = now if at is None else float(at)
                        self._appended += 1
                        entry = HistoryEntry(subject=subject, at=when, step=step, outcome=outcome, detail=detail)
                        self._history.setdefault(subject, []).append((when, self._appended, entry))
                    case Enqueue(key, due_at):
                        self._enqueue(key, float(due_at))
            return written

    def _holds(self, key: str, token: str) -> bool:
        work = self._work.get(key)
        return work is not None and work.holds(token)

    def _version(self, kind: str, key: str) -> int:
        """The stored version of the document; 0 if there is none (versions start at 1)."""
        record = self._documents.get((kind, key))
        return 0 if record is None else record.version

    def _enqueue(self, key: str, due_at: float) -> None:
        work = self._work.get(key)
        self._work[key] = QueueEntry(key, due_at) if work is None else work.enqueued(due_at)

    # -- StateStore ---------------------------------------------------------------------------

    def get(self, kind: str, key: str) -> Document | None:
        with self._lock:
            self._check_open()
            record = self._documents.get((kind, key))
            return None if record is None else decode(kind, key, record.version, record.text, record.updated_at)

    def list(self, kind: str, prefix: str = "") -> builtins.list[Document]:
        with self._lock:
            self._check_open()
            found = [
                decode(kind, key, record.version, record.text, record.updated_at)
                for (of_kind, key), record in self._documents.items()
                if of_kind == kind and key.startswith(prefix)
            ]
        return sorted(found, key=lambda doc: doc.key)  # code point order, as SQLite's BINARY on UTF-8

    def history(self, subject: str) -> builtins.list[HistoryEntry]:
        with self._lock:
            self._check_open()
            return [entry for _, _, entry in sorted(self._history.get(subject, []), key=lambda line: line[:2])]

    # -- WorkQueue ----------------------------------------------------------------------------

    def claim(self, owner: str, now: float, lease_seconds: float) -> WorkItem | None:
        if not owner:
            raise ValueError("a claim needs an owner")
        until = float(now + lease_seconds)
        with self._lock:
            self._check_open()
            ready = [(work.ready, key) for key, work in self._work.items() if work.ready <= now]
            if not ready:
                return None
            ready_at, key = min(ready)
            work = self._work[key] = self._work[key].claimed(owner, until)
            return work.item(ready_at)

    def renew(self, item: WorkItem, now: float, lease_seconds: float) -> WorkItem | None:
        with self._lock:
            self._check_open()
            work = self._work.get(item.key)
            if work is None or not work.holds(item.token):
                return None
            work = self._work[item.key] = replace(work, lease_until=float(now + lease_seconds))
            return replace(item, lease_until=work.lease_until)

    def reschedule(self, item: WorkItem, due_at: float, failures: int = 0) -> None:
        with self._lock:
            self._check_open()
            work = self._work.get(item.key)
            if work is None or not work.holds(item.token):
                return  # the lease was lost
            self._work[item.key] = work.released(work.due_after_reschedule(item, due_at), failures)

    def complete(self, item: WorkItem) -> None:
        with self._lock:
            self._check_open()
            work = self._work.get(item.key)
            if work is None or not work.holds(item.token):
                return  # the lease was lost
            due = work.due_after_complete(item)
            if due is None:
                del self._work[item.key]
            else:  # re-enqueued while we held it: only release the lease
                self._work[item.key] = work.released(due)

    def next_due(self) -> float | None:
        with self._lock:
            self._check_open()
            return min((work.ready for work in self._work.values()), default=None)

    def pending(self) -> int:
        with self._lock:
            self._check_open()
            return len(self._work)

    def items(self) -> builtins.list[WorkItem]:
        with self._lock:
            self._check_open()
            found = [work.item() for work in self._work.values()]
        return sorted(found, key=lambda item: (item.due_at, item.key))

    # -- MachineLeases ------------------------------------------------------------------------

    def acquire(self, machine_id: str, owner: str, now: float, until: float, max_active: int) -> bool:
        if not owner:
            raise ValueError("a machine lease needs an owner")
        with self._lock:
            self._check_open()
            held = self._machines.get(machine_id)
            if held is not None and held[1] > now:
                if held[0] != owner:
                    return False
            else:  # a new session: it counts against the tenant's cap
                if self.active(now) >= max_active:
                    return False
                self._machines = {machine: lease for machine, lease in self._machines.items() if lease[1] > now}
            self._machines[machine_id] = (owner, float(until))
            return True

    def release(self, machine_id: str, owner: str) -> None:
        with self._lock:
            self._check_open()
            held = self._machines.get(machine_id)
            if held is not None and held[0] == owner:
                del self._machines[machine_id]

    def holder(self, machine_id: str, now: float) -> str | None:
        with self._lock:
            self._check_open()
            held = self._machines.get(machine_id)
            return held[0] if held is not None and held[1] > now else None

    def active(self, now: float) -> int:
        with self._lock:
            self._check_open()
            return sum(1 for _, until in self._machines.values() if until > now)
