"""`AzureStore`: every storage port on one Azure table and two Storage Queues.

Partition `state` holds the documents, the history and the work index (an entity per work key),
so each unit of work, whatever documents, history lines and work keys it touches, is one
entity-group transaction; its wake-up messages are sent once it has committed (`work_index`
says how a crash in between is made good). Every check-and-set (a document's version, a claim,
a lease) is an ETag-conditional write against the entity as this store last saw it; a lost race
reads what moved and tries again. The documents' side is `documents`, the work index's
`work_index`; this module puts a unit of work together from both.

Two ways to take work: `claim` (pull: the earliest due item of the index, as SQLite does) and
`accept` (push: the Functions queue trigger delivered a wake-up; lease the item it names).
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from joedefender.adapters._writes import BufferedWrites, Enqueue, Fence, Operation, Written
from joedefender.adapters.azure import state as rows
from joedefender.adapters.azure._table import MAX_TRANSACTION, Lost, Partition, mapped
from joedefender.adapters.azure.connection import AzureStorageConnection
from joedefender.adapters.azure.documents import Documents
from joedefender.adapters.azure.leases import TableMachineLeases
from joedefender.adapters.azure.limits import TableRateLimiter
from joedefender.adapters.azure.queue import WakeUps, WorkState, parse_wakes, queue_names
from joedefender.adapters.azure.work_index import ROUNDS, WorkIndex, number
from joedefender.domain.text import shown
from joedefender.pipeline.ports import (
    Document,
    HistoryEntry,
    Store,
    StoreError,
    StoreUnavailable,
    WorkItem,
)

DEFAULT_PREFIX = "joedefender"
RELAY_GRACE = 600.0  # seconds an outbox entity or an overdue item is left to its writer first

logger = logging.getLogger("joedefender.store")


def table_name(prefix: str) -> str:
    """The store's table: letters and digits only, starting with a letter."""
    name = prefix.replace("-", "") + "state"
    return name if name[0].isalpha() else f"t{name}"


class AzureStore(BufferedWrites, Store):
    """Documents, history, the work queue and machine leases on Azure Storage."""

    def __init__(
        self,
        tables: TableServiceClient,
        queues: QueueServiceClient,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
        where: str = "Azure Storage",
    ) -> None:
        queue_names(prefix)  # refuses a prefix no queue could be named after
        self.prefix = prefix
        self.table_name = table_name(prefix)
        self._where = where
        self._clock = clock
        self._tables = tables
        self._table = tables.get_table_client(self.table_name)
        self._state = Partition(self._table, "state")
        self._machines = TableMachineLeases(Partition(self._table, "machines"))
        self._wakeups = WakeUps(queues, prefix, clock)
        self._documents = Documents(self._state)
        self._index = WorkIndex(self._state, self._wakeups, clock, repr(self))
        self._closed = False
        with mapped(f"creating the table {self.table_name}"):
            tables.create_table_if_not_exists(self.table_name)
        self._wakeups.create()

    @classmethod
    def from_connection(
        cls,
        connection: AzureStorageConnection,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> AzureStore:
        tables, queues = connection.services()
        return cls(tables, queues, prefix=prefix, clock=clock, where=connection.describe())

    def __repr__(self) -> str:
        return f"AzureStore({self.prefix!r} on {self._where})"

    def __enter__(self) -> AzureStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._table.close()
        self._tables.close()
        self._wakeups.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self!r} is closed")

    def queue_names(self) -> dict[str, str]:
        """Role ("liveresponse", "work") -> queue name, for the Functions queue triggers."""
        return dict(self._wakeups.names)

    def rate_limiter(
        self,
        rates: Mapping[str, tuple[int, int | None]],
        *,
        time_scale: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> TableRateLimiter:
        """The tenant's Defender rate budget, shared through this store's table by every instance
        (`clock` is the wall clock they share, not the store's own)."""
        limits = Partition(self._table, "limits")
        return TableRateLimiter(limits, rates, time_scale=time_scale, clock=clock, sleep=sleep)

    # -- writes: a unit of work is one entity-group transaction -----------------------------

    def _apply(self, operations: Sequence[Operation]) -> Written:
        reread: set[str] = set()  # work keys a lost race named: read before the next round
        for _ in range(ROUNDS):
            self._check_open()
            now = self._clock()
            documents, sources, lines, written = self._documents.writes(operations, now)
            work, states, messages = self._index.writes(operations, now, fresh=reread.__contains__)
            redo: str | None = None
            if len(documents) + len(lines) + len(work) <= MAX_TRANSACTION:
                batch = [*documents, *(self._documents.line(line) for line in lines), *work]
            else:
                # More than one transaction holds: the documents and fences (everything that is
                # checked) in one, with a redo entity that holds the rest (history lines and
                # enqueues, which cannot conflict); the redo is applied at once, or by the relay.
                fences = [op for op in operations if isinstance(op, Fence)]
                work, states, messages = self._index.writes(fences, now, fresh=reread.__contains__)
                enqueues = [(op.key, float(op.due_at)) for op in operations if isinstance(op, Enqueue)]
                redo = rows.redo_row()
                batch = [
                    *documents,
                    *work,
                    ("create", self._state.entity(redo, **rows.redo_properties(lines, enqueues, now))),
                ]
            try:
                results = self._state.submit(batch) if batch else []
            except Lost as lost:
                self._documents.raise_conflict(lost, sources)
                reread |= self._lost_keys(lost, len(batch) - len(work) - (redo is not None), states)
                continue  # the work index moved under us: read what moved, try again
            self._documents.written(sources, written, results)
            self._index.written(states, results[len(batch) - len(work) - (redo is not None) :])
            self._index.wake(messages)
            if redo is not None:
                self._replay_now(redo, lines, operations)
            return written
        raise StoreUnavailable(f"{self!r}: the work index changed on every attempt of a unit of work")

    def _lost_keys(self, lost: Lost, first_work: int, states: Sequence[WorkState]) -> set[str]:
        """The work keys to read again after `lost`: the one it names, or all of them."""
        index = lost.index
        if index is not None and first_work <= index < first_work + len(states):
            named = states[index - first_work].key
            self._index.forget(named)
            return {named}
        for state in states:
            self._index.forget(state.key)
        return {state.key for state in states}

    def _replay_now(self, redo: str, lines: Sequence[rows.Line], operations: Sequence[Operation]) -> None:
        enqueues = [(op.key, float(op.due_at)) for op in operations if isinstance(op, Enqueue)]
        try:
            self._replay(redo, lines, enqueues)
        except StoreError as exc:  # committed: the relay applies the rest
            logger.warning("%r: the rest of a large unit of work is left to the relay: %s", self, exc)

    def _replay(self, redo: str, lines: Sequence[rows.Line], enqueues: Sequence[tuple[str, float]]) -> None:
        """Apply what a large unit of work left in its redo entity, then drop it. Applying it
        twice (a crash before the drop) adds no line twice; an enqueue twice is one enqueue."""
        for start in range(0, len(lines), MAX_TRANSACTION):
            chunk = [self._documents.line(line) for line in lines[start : start + MAX_TRANSACTION]]
            try:
                self._state.submit(chunk)
            except Lost:  # some are there already: this is a replay
                for operation in chunk:
                    with contextlib.suppress(Lost):
                        self._state.submit([operation])
        for start in range(0, len(enqueues), MAX_TRANSACTION):
            self._apply([Enqueue(key, due) for key, due in enqueues[start : start + MAX_TRANSACTION]])
        self._state.delete(redo)

    # -- StateStore ---------------------------------------------------------------------------

    def get(self, kind: str, key: str) -> Document | None:
        self._check_open()
        return self._documents.get(kind, key)

    def list(self, kind: str, prefix: str = "") -> builtins.list[Document]:
        self._check_open()
        return self._documents.list(kind, prefix)

    def history(self, subject: str) -> builtins.list[HistoryEntry]:
        self._check_open()
        return self._documents.history(subject)

    # -- WorkQueue ----------------------------------------------------------------------------

    def claim(self, owner: str, now: float, lease_seconds: float) -> WorkItem | None:
        """Pull mode: the earliest due, free item of the index (ties in key order)."""
        if not owner:
            raise ValueError("a claim needs an owner")
        self._check_open()
        return self._index.claim(owner, now, lease_seconds)

    def accept(self, body: str, *, owner: str, now: float, lease_seconds: float) -> WorkItem | None:
        """Push mode: lease the item a delivered wake-up names, if it is due and free.

        None when the message is stale (the item is done, or moved later by whoever then sent
        its own wake-up), early (a wait beyond the 7 days a message may hide: it is sent on for
        the rest) or the item is leased (a wake-up for the lease's end is made sure of, in case
        its holder dies). Either way the trigger consumes the message. (A message of one wake-up:
        `accept_each` takes every one a message carries.)
        """
        return next(self.accept_each(body, owner=owner, now=lambda: now, lease_seconds=lease_seconds), None)

    def accept_each(
        self, body: str, *, owner: str, now: Callable[[], float], lease_seconds: float
    ) -> Iterator[WorkItem]:
        """Push mode, for a message that may carry several wake-ups: lease each item as `accept`
        does, one at a time, as the caller comes back for the next (so none waits leased while
        the others run); the items that were due and free."""
        if not owner:
            raise ValueError("a claim needs an owner")
        wakeups = parse_wakes(body)
        if not wakeups:
            logger.warning("%r: dropped a queue message that is no wake-up: %s", self, shown(body, 200))
        for wakeup in wakeups:
            self._check_open()
            item = self._index.accept(wakeup, owner=owner, now=now(), lease_seconds=lease_seconds)
            if item is not None:
                yield item

    def renew(self, item: WorkItem, now: float, lease_seconds: float) -> WorkItem | None:
        self._check_open()
        return self._index.renew(item, now, lease_seconds)

    def reschedule(self, item: WorkItem, due_at: float, failures: int = 0) -> None:
        self._check_open()
        self._index.release(item, lambda state: state.due_after_reschedule(item, due_at), failures)

    def complete(self, item: WorkItem) -> None:
        self._check_open()
        self._index.release(item, lambda state: state.due_after_complete(item))

    def next_due(self) -> float | None:
        self._check_open()
        return min((float(entity["ready"]) for entity in self._index.rows()), default=None)

    def pending(self) -> int:
        self._check_open()
        return len(self._index.rows())

    def items(self) -> builtins.list[WorkItem]:
        self._check_open()
        found = [WorkState.of(entity).item() for entity in self._index.rows()]
        return sorted(found, key=lambda item: (item.due_at, item.key))

    def relay_outbox(self, now: float, *, grace: float = RELAY_GRACE, lease_grace: float | None = None) -> int:
        """The sweeper timer's job: send the wake-ups a failed send left in the outbox and apply
        what large units of work left in redo entities (each older than `grace`); wake items
        overdue by more than `grace` that no wake-up was sent for since (a lost or poisoned
        message, or a crash between a write and its send), and leased items whose lease ended
        more than `lease_grace` (default: a tenth of `grace`) ago with no wake-up since (their
        holder died). Returns how many wake-ups were sent or enqueued."""
        self._check_open()
        sent = 0
        for entity in self._state.rows(rows.redo_prefix(), f"at le {number(now - grace)}"):
            lines, enqueues = rows.redo_of(entity)
            self._replay(str(entity["RowKey"]), lines, enqueues)
            sent += len(enqueues)
        for entity in self._state.rows(rows.outbox_prefix(), f"at le {number(now - grace)}"):
            messages = rows.outbox_messages(entity)
            for key, due in messages:
                self._wakeups.send(key, due)
            self._state.delete(str(entity["RowKey"]))
            sent += len(messages)
        short = grace / 10 if lease_grace is None else lease_grace
        return sent + self._index.wake_stranded(now, grace=grace, lease_grace=short)

    def poisoned(self) -> builtins.list[tuple[str, str]]:
        """(queue, body) of the messages in the `-poison` queues, for `status`."""
        self._check_open()
        return self._wakeups.poisoned()

    # -- MachineLeases ------------------------------------------------------------------------

    def acquire(self, machine_id: str, owner: str, now: float, until: float, max_active: int) -> bool:
        self._check_open()
        return self._machines.acquire(machine_id, owner, now, until, max_active)

    def release(self, machine_id: str, owner: str) -> None:
        self._check_open()
        self._machines.release(machine_id, owner)

    def holder(self, machine_id: str, now: float) -> str | None:
        self._check_open()
        return self._machines.holder(machine_id, now)

    def active(self, now: float) -> int:
        self._check_open()
        return self._machines.active(now)
