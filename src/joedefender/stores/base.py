"""The ports the workflow keeps its state in: versioned documents, a work queue, machine leases.

The core only talks to these protocols, so the embedded SQLite adapter and a cloud adapter (Azure
Tables and Queues) are interchangeable. Every operation is atomic on its own: the workflow builds
exactly-once effects from optimistic versions (`update`), atomic creation (`create`), leases on
work items (`claim`) and check-and-set leases on machines (`acquire`), never from locks held
across calls.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, Protocol

from joedefender.domain.errors import JoeDefenderError


class StoreError(JoeDefenderError):
    """The store could not do what was asked."""


class VersionConflict(StoreError):
    """Optimistic concurrency lost: someone else updated the document first; re-read and retry."""

    def __init__(self, kind: str, key: str, version: int) -> None:
        self.kind = kind
        self.key = key
        self.version = version
        super().__init__(f"{kind} {key!r} is no longer at version {version}: someone else updated it")


class StoreUnavailable(StoreError):
    """The backing store is locked, busy or unreachable; the operation did not happen and may be retried."""


class SchemaVersionError(StoreError):
    """The database was written by a newer joedefender, whose schema this version does not know."""


@dataclass(frozen=True, slots=True)
class Document:
    """One versioned JSON record; `version` is what `update` checks against."""

    kind: str
    key: str
    version: int
    data: dict[str, Any]
    updated_at: float


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A claimed (or, from `items`, queued) unit of work; the claim fields identify the lease."""

    key: str
    due_at: float
    attempts: int
    owner: str
    lease_until: float
    generation: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One step a subject (a job) went through, for `status` and for the analyst."""

    subject: str
    at: float
    step: str
    outcome: str
    detail: str


class StateStore(Protocol):
    """Versioned JSON documents and an append-only step history."""

    def get(self, kind: str, key: str) -> Document | None:
        """The document, or None if there is none."""
        ...

    def create(self, kind: str, key: str, data: dict[str, Any]) -> Document | None:
        """Create at version 1; None if it already exists (exactly one of racing creators wins)."""
        ...

    def update(self, doc: Document, data: dict[str, Any]) -> Document:
        """Replace the data if the stored version is still `doc.version`, else raise VersionConflict."""
        ...

    def list(self, kind: str, prefix: str = "") -> builtins.list[Document]:
        """The documents of a kind whose key starts with `prefix`, in key order."""
        ...

    def append_history(self, subject: str, step: str, outcome: str, detail: str = "", at: float | None = None) -> None:
        """Record a step; `at` defaults to the store's clock."""
        ...

    def history(self, subject: str) -> builtins.list[HistoryEntry]:
        """The subject's steps in time order (ties in the order they were appended)."""
        ...


class WorkQueue(Protocol):
    """Keys due at a time, taken by workers under an expiring lease so a crash loses nothing."""

    def enqueue(self, key: str, due_at: float) -> None:
        """Add the key, or move an existing one earlier (never later) and bump its generation.

        A lease held on the key stays held: the holder's `complete` or `reschedule` then sees
        the new generation and keeps the item due at the enqueued time.
        """
        ...

    def claim(self, owner: str, now: float, lease_seconds: float) -> WorkItem | None:
        """Atomically lease the earliest item that is due and free (or whose lease expired)."""
        ...

    def reschedule(self, item: WorkItem, due_at: float) -> None:
        """Release the lease and make the item due at `due_at` (or earlier, if re-enqueued since).

        A no-op if the lease was lost, that is if another claim took the item since.
        """
        ...

    def complete(self, item: WorkItem) -> None:
        """Delete the item, unless re-enqueued since the claim: then only release the lease.

        A no-op if the lease was lost.
        """
        ...

    def next_due(self) -> float | None:
        """The earliest time at which `claim` could return an item; None if the queue is empty.

        That is the due time of a free item, or the lease expiry of a leased one (an item is
        never handed out while its lease runs), so a worker can sleep until then.
        """
        ...

    def pending(self) -> int:
        """How many items are in the queue, leased or not."""
        ...

    def items(self) -> builtins.list[WorkItem]:
        """Every item in the order it will be claimed; a leased item shows its lease expiry as due."""
        ...


class MachineLeases(Protocol):
    """One live response per machine, and the tenant's cap on concurrent live response sessions."""

    def acquire(self, machine_id: str, owner: str, now: float, until: float, max_active: int) -> bool:
        """Take (or, if `owner` holds it, extend) the machine's lease, as one check-and-set.

        False if another owner holds an unexpired lease on it, or if taking it would make more
        than `max_active` unexpired leases.
        """
        ...

    def release(self, machine_id: str, owner: str) -> None:
        """Give the lease back; only the owner's own lease is released."""
        ...

    def holder(self, machine_id: str, now: float) -> str | None:
        """Who holds an unexpired lease on the machine, if anyone."""
        ...

    def active(self, now: float) -> int:
        """How many unexpired machine leases exist."""
        ...


class Store(StateStore, WorkQueue, MachineLeases, Protocol):
    """Everything the workflow needs from its storage, as one adapter provides it."""

    def close(self) -> None:
        """Release the adapter's connections; the store is not used afterwards."""
        ...
