"""`AzureStore`: every storage port on one Azure table and two Storage Queues.

Partition `state` holds the documents, the history, the work index (an entity per work key) and
the outbox, so each unit of work, whatever documents, history lines and work keys it touches,
is one entity-group transaction, with its wake-up messages as one outbox entity inside it.
After the transaction the messages are sent and the outbox entity deleted; a crash in between
leaves the outbox entity for `relay_outbox`. Every check-and-set (a document's version, a
claim, a lease) is an ETag-conditional write; a lost race re-reads and tries again.

Two ways to take work: `claim` (pull: the earliest due item of the index, as SQLite does) and
`accept` (push: the Functions queue trigger delivered a wake-up; lease the item it names).
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

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
from joedefender.adapters.azure import state as rows
from joedefender.adapters.azure._table import (
    MAX_TRANSACTION,
    Lost,
    Partition,
    TableOperation,
    etag,
    if_unchanged,
    mapped,
    put,
)
from joedefender.adapters.azure.connection import AzureStorageConnection
from joedefender.adapters.azure.leases import TableMachineLeases
from joedefender.adapters.azure.limits import TableRateLimiter
from joedefender.adapters.azure.queue import WakeUps, WorkState, parse_body, queue_names
from joedefender.domain.text import shown
from joedefender.pipeline.ports import (
    AlreadyExists,
    Document,
    HistoryEntry,
    LeaseLost,
    Store,
    StoreError,
    StoreUnavailable,
    VersionConflict,
    WorkItem,
)

DEFAULT_PREFIX = "joedefender"
RELAY_GRACE = 600.0  # seconds an outbox entity or an overdue item is left to its writer first
_ROUNDS = 100  # attempts of one write against a work index that others keep changing
_MAX_ETAGS = 10_000
_SPREAD = 8  # items one claim tries before it reads the index again

logger = logging.getLogger("joedefender.store")


def table_name(prefix: str) -> str:
    """The store's table: letters and digits only, starting with a letter."""
    name = prefix.replace("-", "") + "state"
    return name if name[0].isalpha() else f"t{name}"


def _number(value: float) -> str:
    """A Double literal for an OData filter (the SDK's parameters render 0.0 and 1.0 as booleans)."""
    return f"{float(value):.6f}"


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
        self._etags: dict[tuple[str, str], tuple[int, str]] = {}  # (kind, key) -> (version, etag)
        self._known: dict[str, tuple[WorkState, str]] = {}  # work key -> as last read or written here
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
        for round_ in range(_ROUNDS):
            self._check_open()
            now = self._clock()
            documents: list[TableOperation] = []
            sources: list[Create | Update] = []  # what each document write came from
            lines: list[rows.Line] = []
            written: Written = {}
            for operation in operations:
                match operation:
                    case Create(kind, key, text):
                        documents.append(put(self._document(kind, key, 1, text, now), None))
                        sources.append(operation)
                        written[kind, key] = decode(kind, key, 1, text, now)
                    case Update(kind, key, version, text):
                        tag = self._document_etag(kind, key, version)
                        documents.append(put(self._document(kind, key, version + 1, text, now), tag))
                        sources.append(operation)
                        written[kind, key] = decode(kind, key, version + 1, text, now)
                    case AppendHistory(subject, step, outcome, detail, at):
                        when = now if at is None else float(at)
                        lines.append(rows.Line(rows.history_row(subject), subject, when, step, outcome, detail))
            work, states, messages = self._work_writes(operations, now, fresh=round_ > 0)
            redo: str | None = None
            enqueues = [(op.key, float(op.due_at)) for op in operations if isinstance(op, Enqueue)]
            if len(documents) + len(lines) + len(work) + bool(messages) <= MAX_TRANSACTION:
                batch = [*documents, *(self._line(line) for line in lines), *work]
            else:
                # More than one transaction holds: the documents and fences (everything that is
                # checked) in one, with a redo entity that holds the rest (history lines and
                # enqueues, which cannot conflict); the redo is applied at once, or by the relay.
                work, states, messages = self._work_writes(
                    [op for op in operations if isinstance(op, Fence)], now, fresh=round_ > 0
                )
                redo = rows.redo_row()
                batch = [
                    *documents,
                    *work,
                    ("create", self._state.entity(redo, **rows.redo_properties(lines, enqueues, now))),
                ]
            try:
                results = self._submit(batch, messages, now)
            except Lost as lost:
                self._raise_conflict(lost, sources)
                continue  # the work index moved under us: read it again
            for source, result in zip(sources, results, strict=False):
                self._remember(source.kind, source.key, written[source.kind, source.key].version, result)
            first_work = len(batch) - len(work) - (redo is not None)
            for state, result in zip(states, results[first_work:], strict=False):
                self._known[state.key] = (state, str(result["etag"]))
            if redo is not None:
                try:
                    self._replay(redo, lines, enqueues)
                except StoreError as exc:  # committed: the relay applies the rest
                    logger.warning("%r: the rest of a large unit of work is left to the relay: %s", self, exc)
            return written
        raise StoreUnavailable(f"{self!r}: the work index changed on every attempt of a unit of work")

    def _line(self, line: rows.Line) -> TableOperation:
        properties = rows.history_properties(line.subject, line.at, line.step, line.outcome, line.detail)
        return ("create", self._state.entity(line.row, **properties))

    def _replay(self, redo: str, lines: Sequence[rows.Line], enqueues: Sequence[tuple[str, float]]) -> None:
        """Apply what a large unit of work left in its redo entity, then drop it. Applying it
        twice (a crash before the drop) adds no line twice; an enqueue twice is one enqueue."""
        for start in range(0, len(lines), MAX_TRANSACTION):
            chunk = [self._line(line) for line in lines[start : start + MAX_TRANSACTION]]
            try:
                self._state.submit(chunk)
            except Lost:  # some are there already: this is a replay
                for operation in chunk:
                    with contextlib.suppress(Lost):
                        self._state.submit([operation])
        for start in range(0, len(enqueues), MAX_TRANSACTION - 1):  # each key, and one outbox
            self._apply([Enqueue(key, due) for key, due in enqueues[start : start + MAX_TRANSACTION - 1]])
        self._state.delete(redo)

    def _document(self, kind: str, key: str, version: int, text: str, now: float) -> dict[str, Any]:
        properties = rows.document_properties(kind, key, version, text, now)
        return self._state.entity(rows.document_row(kind, key), **properties)

    def _document_etag(self, kind: str, key: str, version: int) -> str:
        """The ETag of the document at `version`; VersionConflict if it is no longer there."""
        cached = self._etags.get((kind, key))
        if cached is not None and cached[0] == version:
            return cached[1]
        if cached is not None and cached[0] > version:  # this store saw a later one: no need to ask
            raise VersionConflict(kind, key, version)
        entity = self._state.get(rows.document_row(kind, key))
        if entity is None or int(entity["version"]) != version:
            raise VersionConflict(kind, key, version)
        return etag(entity)

    def _remember(self, kind: str, key: str, version: int, entity: Any) -> None:
        """Keep the ETag of what was read or written, so an update needs no read first."""
        tag = entity.metadata["etag"] if hasattr(entity, "metadata") else entity["etag"]
        if len(self._etags) >= _MAX_ETAGS:
            self._etags.clear()
        self._etags[kind, key] = (version, str(tag))

    def _raise_conflict(self, lost: Lost, sources: Sequence[Create | Update]) -> None:
        """Raise AlreadyExists or VersionConflict if a document lost the transaction its race;
        return if the work index did (the caller tries again)."""
        index = lost.index
        if index is None:  # not said: look at each document
            suspects = list(sources)
        else:  # an entry past the documents and history lines is the work index or the outbox
            suspects = [sources[index]] if index < len(sources) else []
        for source in suspects:
            match source:
                case Create(kind, key) if index is not None or self._state.get(rows.document_row(kind, key)):
                    raise AlreadyExists(kind, key) from None
                case Update(kind, key, version):
                    self._etags.pop((kind, key), None)
                    stored = self._state.get(rows.document_row(kind, key))
                    if index is not None or stored is None or int(stored["version"]) != version:
                        raise VersionConflict(kind, key, version) from None

    def _work_writes(
        self, operations: Sequence[Operation], now: float, *, fresh: bool
    ) -> tuple[list[TableOperation], list[WorkState], list[tuple[str, float]]]:
        """The work index writes of a unit of work's enqueues and fences, each ETag-checked
        against the entity as known (a fence alone rewrites it unchanged: the check is the
        point), the states written, and the wake-ups they need. LeaseLost for a fence whose
        claim no longer holds. Unless `fresh`, a key this store has not seen is taken to be new,
        as most enqueued keys are: if it is not, the transaction fails and the next round reads it."""
        dues: dict[str, list[float]] = {}
        tokens: dict[str, list[str]] = {}
        for operation in operations:
            if isinstance(operation, Fence):
                tokens.setdefault(operation.key, []).append(operation.token)
                dues.setdefault(operation.key, [])
            elif isinstance(operation, Enqueue):
                dues.setdefault(operation.key, []).append(float(operation.due_at))
        batch: list[TableOperation] = []
        states: list[WorkState] = []
        messages: list[tuple[str, float]] = []
        for key, times in dues.items():
            before, tag = self._work_state(key, fresh=fresh)
            if key in tokens and not fresh and not _all_hold(before, tokens[key]):
                before, tag = self._work_state(key, fresh=True)  # as known here; read it to be sure
            if key in tokens and not _all_hold(before, tokens[key]):
                raise LeaseLost(key)
            after = before
            for due in times:
                after = WorkState(key, due) if after is None else after.enqueued(due)
            assert after is not None
            wake = None if after is before else _wake_needed(before, after, now)
            if wake is not None:
                messages.append((key, wake))
                after = replace(after, wake=max(after.wake, wake))
            batch.append(put(self._state.entity(rows.work_row(key), **after.properties()), tag))
            states.append(after)
        return batch, states, messages

    def _work_state(self, key: str, *, fresh: bool) -> tuple[WorkState | None, str | None]:
        """A work key's state and ETag: as this store last saw it, or (`fresh`) as stored now."""
        if not fresh:
            known = self._known.get(key)
            return (None, None) if known is None else known
        entity = self._state.get(rows.work_row(key))
        if entity is None:
            self._known.pop(key, None)
            return None, None
        return self._seen(entity), etag(entity)

    def _seen(self, entity: Any) -> WorkState:
        state = WorkState.of(entity)
        if len(self._known) >= _MAX_ETAGS:
            self._known.clear()
        self._known[state.key] = (state, etag(entity))
        return state

    def _submit(
        self, batch: Sequence[TableOperation], messages: Sequence[tuple[str, float]], now: float
    ) -> list[Mapping[str, Any]]:
        """Write the batch with an outbox entity for `messages` in the same transaction; then
        send them and delete it. Lost if the batch lost a race."""
        if not batch:
            return []
        outbox = rows.outbox_row() if messages else None
        if outbox is not None:
            properties = rows.outbox_properties(list(messages), now)
            batch = [*batch, ("create", self._state.entity(outbox, **properties))]
        results = self._state.submit(batch)
        if outbox is not None:
            self._deliver(outbox, messages)
        return results

    def _deliver(self, outbox: str, messages: Sequence[tuple[str, float]]) -> None:
        """Send an outbox's messages, then drop it; if that fails the relay sends them later
        (the unit of work itself has committed, so this never fails it)."""
        try:
            for key, due in messages:
                self._wakeups.send(key, due)
            self._state.delete(outbox)
        except StoreError as exc:
            logger.warning("%r: wake-ups left in the outbox for the relay: %s", self, exc)

    def _swap(self, key: str, tag: str, new: WorkState | None, messages: Sequence[tuple[str, float]] = ()) -> bool:
        """Replace (None: delete) a work index entity unless it changed since it was at `tag`."""
        row = rows.work_row(key)
        operation: TableOperation
        if new is None:
            operation = ("delete", self._state.entity(row), if_unchanged(tag))
        else:
            operation = put(self._state.entity(row, **new.properties()), tag)
        try:
            [result, *_] = self._submit([operation], messages, self._clock())
        except Lost:
            self._known.pop(key, None)
            return False
        if new is None:
            self._known.pop(key, None)
        else:
            self._known[key] = (new, str(result["etag"]))
        return True

    # -- StateStore ---------------------------------------------------------------------------

    def get(self, kind: str, key: str) -> Document | None:
        self._check_open()
        entity = self._state.get(rows.document_row(kind, key))
        if entity is None:
            return None
        doc = rows.document_of(entity)
        self._remember(kind, key, doc.version, entity)
        return doc

    def list(self, kind: str, prefix: str = "") -> builtins.list[Document]:
        self._check_open()
        found = []
        for entity in self._state.rows(rows.documents_prefix(kind, prefix)):
            doc = rows.document_of(entity)
            self._remember(kind, doc.key, doc.version, entity)
            found.append(doc)
        return sorted(found, key=lambda doc: doc.key)  # code point order, as SQLite's BINARY on UTF-8

    def history(self, subject: str) -> builtins.list[HistoryEntry]:
        self._check_open()
        found = self._state.rows(rows.history_prefix(subject))
        found.sort(key=lambda entity: (float(entity["at"]), str(entity["RowKey"])))
        return [rows.history_of(entity) for entity in found]

    # -- WorkQueue ----------------------------------------------------------------------------

    def _work(self, condition: str = "") -> builtins.list[Any]:
        self._check_open()
        return self._state.rows(rows.work_prefix(), condition)

    def claim(self, owner: str, now: float, lease_seconds: float) -> WorkItem | None:
        """Pull mode: the earliest due, free item of the index (ties in key order)."""
        if not owner:
            raise ValueError("a claim needs an owner")
        until = float(now + lease_seconds)
        for _ in range(_ROUNDS):
            ready = self._work(f"ready le {_number(now)}")
            if not ready:
                return None
            ready.sort(key=lambda e: (float(e["ready"]), str(e["key"])))
            for attempt in range(min(len(ready), _SPREAD)):
                # The earliest first; once that race is lost, racing claimers would all go for
                # the next one: each takes one of the rest at random (no order holds among racers).
                entity = ready.pop(0 if attempt == 0 else random.randrange(len(ready)))
                state = self._seen(entity)
                claimed = state.claimed(owner, until)
                if self._swap(state.key, etag(entity), claimed):
                    return claimed.item(due_at=state.ready)
        raise StoreUnavailable(f"{self!r}: every claim lost its race")

    def accept(self, body: str, *, owner: str, now: float, lease_seconds: float) -> WorkItem | None:
        """Push mode: lease the item a delivered wake-up names, if it is due and free.

        None when the message is stale (the item is done, or moved later by whoever then sent
        its own wake-up), early (a wait beyond the 7 days a message may hide: it is sent on for
        the rest) or the item is leased (a wake-up for the lease's end is made sure of, in case
        its holder dies). Either way the trigger consumes the message.
        """
        if not owner:
            raise ValueError("a claim needs an owner")
        parsed = parse_body(body)
        if parsed is None:
            logger.warning("%r: dropped a queue message that is no wake-up: %s", self, shown(body, 200))
            return None
        key, due = parsed
        for _ in range(_ROUNDS):
            self._check_open()
            state, tag = self._work_state(key, fresh=True)
            if state is None or tag is None:
                return None
            if state.ready <= now:
                claimed = state.claimed(owner, float(now + lease_seconds))
                if self._swap(key, tag, claimed):
                    return claimed.item(due_at=state.ready)
                continue
            if not state.owner:
                if due > now:
                    self._wakeups.send(key, due)
                return None
            if state.wake >= state.lease_until:
                return None
            if self._swap(key, tag, replace(state, wake=state.lease_until), [(key, state.lease_until)]):
                return None
        raise StoreUnavailable(f"{self!r}: the work index entity of {key!r} changed on every attempt")

    def _release(self, item: WorkItem, due: Callable[[WorkState], float | None]) -> None:
        """Complete or reschedule: change the item if `item` still holds it; `due` gives the
        time it is due again, or None to delete it."""
        for round_ in range(_ROUNDS):
            self._check_open()
            state, tag = self._work_state(item.key, fresh=round_ > 0)
            if state is None or tag is None:
                if round_ == 0:
                    continue  # not known here: read it
                return
            if not state.holds(item.token):
                if round_ == 0:
                    continue  # as known here; it may have changed since: read it
                return  # the lease was lost
            again = due(state)
            if again is None:
                done = self._swap(item.key, tag, None)
            else:
                released = replace(state.released(again), wake=max(state.wake, again))
                done = self._swap(item.key, tag, released, [(item.key, again)])
            if done:
                return
        raise StoreUnavailable(f"{self!r}: the work index entity of {item.key!r} changed on every attempt")

    def renew(self, item: WorkItem, now: float, lease_seconds: float) -> WorkItem | None:
        until = float(now + lease_seconds)
        for round_ in range(_ROUNDS):
            self._check_open()
            state, tag = self._work_state(item.key, fresh=round_ > 0)
            if state is None or tag is None or not state.holds(item.token):
                if round_ == 0:
                    continue  # as known here; it may have changed since: read it
                return None
            if self._swap(item.key, tag, replace(state, lease_until=until)):
                return replace(item, lease_until=until)
        raise StoreUnavailable(f"{self!r}: the work index entity of {item.key!r} changed on every attempt")

    def reschedule(self, item: WorkItem, due_at: float) -> None:
        self._release(item, lambda state: state.due_after_reschedule(item, due_at))

    def complete(self, item: WorkItem) -> None:
        self._release(item, lambda state: state.due_after_complete(item))

    def next_due(self) -> float | None:
        return min((float(entity["ready"]) for entity in self._work()), default=None)

    def pending(self) -> int:
        return len(self._work())

    def items(self) -> builtins.list[WorkItem]:
        found = [WorkState.of(entity).item() for entity in self._work()]
        return sorted(found, key=lambda item: (item.due_at, item.key))

    def relay_outbox(self, now: float, *, grace: float = RELAY_GRACE) -> int:
        """The timer sweeper's job: send the wake-ups of outbox entities older than `grace`
        (a crash came between a transaction and its sends), apply what large units of work left
        in redo entities as old, and wake items overdue by more than `grace` that no wake-up was
        sent for since (a lost or poisoned message). Returns how many wake-ups were sent or
        enqueued."""
        self._check_open()
        sent = 0
        for entity in self._state.rows(rows.redo_prefix(), f"at le {_number(now - grace)}"):
            lines, enqueues = rows.redo_of(entity)
            self._replay(str(entity["RowKey"]), lines, enqueues)
            sent += len(enqueues)
        for entity in self._state.rows(rows.outbox_prefix(), f"at le {_number(now - grace)}"):
            messages = rows.outbox_messages(entity)
            for key, due in messages:
                self._wakeups.send(key, due)
            self._state.delete(str(entity["RowKey"]))
            sent += len(messages)
        for entity in self._work(f"ready le {_number(now - grace)}"):
            state = WorkState.of(entity)
            if state.wake <= now - grace and self._swap(
                state.key, etag(entity), replace(state, wake=now), [(state.key, now)]
            ):
                sent += 1
        return sent

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


def _all_hold(state: WorkState | None, tokens: Sequence[str]) -> bool:
    return state is not None and all(state.holds(token) for token in tokens)


def _wake_needed(before: WorkState | None, after: WorkState, now: float) -> float | None:
    """When an enqueue must wake the item: at its new due time if that moved (a free item), now
    if its lease ran out with nobody to take it again; a live lease's holder wakes it itself."""
    if not after.owner:
        assert after.due is not None
        return after.due if before is None or before.due != after.due else None
    return now if after.lease_until <= now else None
