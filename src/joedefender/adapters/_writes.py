"""What the store adapters share: the record format, and writes as buffered units of work.

A unit of work only collects operations; its adapter applies them all at once, in one
transaction or under one lock, at `commit`. The immediate writes (`create`, `update`,
`append_history`, `enqueue`) are one-operation units of work, so each adapter has exactly one
code path per kind of write: its `_apply`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from joedefender.pipeline.ports import AlreadyExists, Document, StoreError, UnitOfWork, WorkItem

# -- the record format ------------------------------------------------------------------------


def encode(kind: str, key: str, data: dict[str, Any]) -> str:
    """Serialise document data, refusing what would not read back as written."""
    if not isinstance(data, dict):
        raise TypeError(f"{kind} {key!r}: document data must be a dict, not {type(data).__name__}")
    try:
        _check_keys(data)
        return json.dumps(data, sort_keys=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{kind} {key!r}: document data is not JSON-serialisable: {exc}") from exc


def _check_keys(value: Any) -> None:
    """json would silently turn int keys into strings; a record must read back as it was written."""
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(f"keys must be str, not {type(name).__name__} ({name!r})")
            _check_keys(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_keys(item)


def decode(kind: str, key: str, version: int, text: str, updated_at: float) -> Document:
    """A document read back from its stored text: a fresh copy of the data every time."""
    return Document(kind=kind, key=key, version=version, data=json.loads(text), updated_at=updated_at)


# -- the operations a unit of work collects ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    """Create `key` at version 1; `AlreadyExists` if it exists."""

    kind: str
    key: str
    text: str


@dataclass(frozen=True, slots=True)
class Update:
    """Replace the data if the stored version is still `version`; `VersionConflict` if not."""

    kind: str
    key: str
    version: int
    text: str


@dataclass(frozen=True, slots=True)
class AppendHistory:
    """A history line; `at` None means the time of the commit, by the store's clock."""

    subject: str
    step: str
    outcome: str
    detail: str
    at: float | None


@dataclass(frozen=True, slots=True)
class Enqueue:
    """As `WorkQueue.enqueue`."""

    key: str
    due_at: float


@dataclass(frozen=True, slots=True)
class Fence:
    """Apply nothing (`LeaseLost`) unless the claim `token` still holds the work item `key`."""

    key: str
    token: str


Operation = Create | Update | AppendHistory | Enqueue | Fence
Written = dict[tuple[str, str], Document]


class BufferedUnitOfWork(UnitOfWork):
    """Collects a step's writes in memory; `commit` hands them to the adapter in one piece.

    Data is serialised (and so checked) when it is added, so a bad record fails at the call that
    made it, and later changes to the caller's dict do not leak into the commit. A unit of work
    writes each document at most once, and is committed at most once. One step uses it, from
    one thread.
    """

    def __init__(self, apply: Callable[[Sequence[Operation]], Written]) -> None:
        self._apply = apply
        self._operations: list[Operation] = []
        self._fences: list[Fence] = []
        self._documents: set[tuple[str, str]] = set()
        self._committed = False

    def __repr__(self) -> str:
        state = "committed" if self._committed else f"{len(self._operations)} operations"
        return f"<unit of work, {state}>"

    def create(self, kind: str, key: str, data: dict[str, Any]) -> None:
        self._add_document(Create(kind, key, encode(kind, key, data)))

    def update(self, doc: Document, data: dict[str, Any]) -> None:
        self._add_document(Update(doc.kind, doc.key, doc.version, encode(doc.kind, doc.key, data)))

    def append_history(self, subject: str, step: str, outcome: str, detail: str = "", at: float | None = None) -> None:
        self._add(AppendHistory(subject, step, outcome, detail, at))

    def enqueue(self, key: str, due_at: float) -> None:
        self._add(Enqueue(key, due_at))

    def fence(self, item: WorkItem) -> None:
        self._check_open()
        self._fences.append(Fence(item.key, item.token))

    def commit(self) -> Mapping[tuple[str, str], Document]:
        self._check_open()
        self._committed = True  # even if applying fails: the step re-reads and builds a new one
        if not self._operations and not self._fences:
            return {}
        # The fences first: an adapter checks them before it writes anything.
        return self._apply((*self._fences, *self._operations))

    def _add_document(self, operation: Create | Update) -> None:
        self._check_open()
        name = (operation.kind, operation.key)
        if name in self._documents:
            raise ValueError(f"{operation.kind} {operation.key!r} is written twice in one unit of work")
        self._documents.add(name)
        self._operations.append(operation)

    def _add(self, operation: Operation) -> None:
        self._check_open()
        self._operations.append(operation)

    def _check_open(self) -> None:
        if self._committed:
            raise StoreError(f"{self!r}: a unit of work is committed once; start a new one")


class BufferedWrites(ABC):
    """The `StateStore` and `WorkQueue` writes of an adapter, all built on its `_apply`."""

    @abstractmethod
    def _apply(self, operations: Sequence[Operation]) -> Written:
        """Apply the operations in order, atomically: all of them, or (raising) none.

        Raises `LeaseLost` for a `Fence` whose claim no longer holds its item (the fences come
        first), `AlreadyExists` or `VersionConflict` for the first operation that cannot be
        applied. Returns the documents written, by (kind, key), at their new versions; their
        `updated_at`, and the time of history lines without one, is one reading of the clock.
        """

    def unit_of_work(self) -> UnitOfWork:
        return BufferedUnitOfWork(self._apply)

    def create(self, kind: str, key: str, data: dict[str, Any]) -> Document | None:
        work = self.unit_of_work()
        work.create(kind, key, data)
        try:
            return work.commit()[(kind, key)]
        except AlreadyExists:
            return None

    def update(self, doc: Document, data: dict[str, Any]) -> Document:
        work = self.unit_of_work()
        work.update(doc, data)
        return work.commit()[(doc.kind, doc.key)]

    def append_history(self, subject: str, step: str, outcome: str, detail: str = "", at: float | None = None) -> None:
        work = self.unit_of_work()
        work.append_history(subject, step, outcome, detail, at)
        work.commit()

    def enqueue(self, key: str, due_at: float) -> None:
        work = self.unit_of_work()
        work.enqueue(key, due_at)
        work.commit()
