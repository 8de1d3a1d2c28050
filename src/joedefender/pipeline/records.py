"""Typed access to the store's versioned documents, and the unit of work a step writes through.

A step reads records through a `Repository`, changes them, and writes everything it changed (the
records, its history lines, the next work items) through one `Changes`: committed together, or,
when someone else changed a record first, not at all (`VersionConflict`, and the step runs again).
A small document of its own (a counter, a watermark, a hold) is changed with `upsert`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from joedefender.domain.incidents import IncidentVerdicts
from joedefender.domain.jobs import (
    AlertRecord,
    AlertSampleLink,
    EndpointCleanup,
    IndicatorBudget,
    IndicatorPush,
    SampleJob,
)
from joedefender.domain.text import shown
from joedefender.pipeline.clock import Clock
from joedefender.pipeline.ports import Document, StateStore, UnitOfWork, VersionConflict

M = TypeVar("M", bound=BaseModel)

logger = logging.getLogger("joedefender.pipeline")
MAX_DETAIL = 2000  # characters of one history line's detail


@dataclass
class Versioned(Generic[M]):
    """A record and the document version it was read at; saving it fails if someone saved since."""

    record: M
    doc: Document


class Repository(Generic[M]):
    def __init__(self, store: StateStore, kind: str, model: type[M]) -> None:
        self._store = store
        self.kind = kind
        self._model = model

    def get(self, key: str) -> Versioned[M] | None:
        doc = self._store.get(self.kind, key)
        return None if doc is None else Versioned(self._model.model_validate(doc.data), doc)

    def list(self, prefix: str = "") -> list[Versioned[M]]:
        return [Versioned(self._model.model_validate(d.data), d) for d in self._store.list(self.kind, prefix)]


class Records:
    """The store's records by kind: what `status` reads and every step works on."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.alerts: Repository[AlertRecord] = Repository(store, "alert", AlertRecord)
        self.jobs: Repository[SampleJob] = Repository(store, "job", SampleJob)
        self.links: Repository[AlertSampleLink] = Repository(store, "link", AlertSampleLink)
        self.cleanups: Repository[EndpointCleanup] = Repository(store, "cleanup", EndpointCleanup)
        self.pushes: Repository[IndicatorPush] = Repository(store, "push", IndicatorPush)
        self.budgets: Repository[IndicatorBudget] = Repository(store, "budget", IndicatorBudget)
        self.incident_verdicts: Repository[IncidentVerdicts] = Repository(store, "incident", IncidentVerdicts)


class Changes:
    """One step's unit of work. Use as `with ctx.changes() as changes: ...`: it commits when the
    block ends without an exception, and writes nothing otherwise."""

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock
        self._saved: dict[tuple[str, str], Versioned[BaseModel]] = {}
        self._created: list[Versioned[BaseModel]] = []
        self._lines: list[tuple[str, str, str, str]] = []

    def save(self, stored: Versioned[M]) -> None:
        """Write the record as it is when the unit of work commits (saving it twice writes it once)."""
        self._saved[(stored.doc.kind, stored.doc.key)] = stored  # type: ignore[assignment]

    def create(self, repository: Repository[M], key: str, record: M) -> Versioned[M]:
        """The new record; its document is known once committed (`AlreadyExists` if it was there)."""
        self._uow.create(repository.kind, key, record.model_dump(mode="json"))
        stored = Versioned(record, Document(repository.kind, key, 0, {}, 0.0))
        self._created.append(stored)  # type: ignore[arg-type]
        return stored

    def record(self, subject: str, step: str, outcome: str, detail: str = "") -> None:
        """One line of a job's or alert's history (shown by `status`) and, once committed, of the log.
        The detail often quotes attacker text (a URL, a file name, an error): it is stored safe."""
        detail = shown(detail, MAX_DETAIL)
        self._uow.append_history(subject, step, outcome, detail, at=self._clock.now())
        self._lines.append((subject, step, outcome, detail))

    def enqueue(self, key: str, after: float = 0.0) -> None:
        """Make the work item due `after` nominal seconds from now (earlier, if negative)."""
        self._uow.enqueue(key, self._clock.after(after))

    def commit(self) -> None:
        for stored in self._saved.values():
            self._uow.update(stored.doc, stored.record.model_dump(mode="json"))
        written = self._uow.commit()
        for stored in [*self._saved.values(), *self._created]:
            stored.doc = written[(stored.doc.kind, stored.doc.key)]
        for line in self._lines:
            logger.info("%s %s: %s %s", *line)

    def __enter__(self) -> Changes:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.commit()


Data = dict[str, Any]


def upsert(
    store: StateStore, kind: str, key: str, change: Callable[[Data | None], Data | None], *, tries: int = 5
) -> tuple[Data | None, bool]:
    """Change a small document under optimistic concurrency: `change` gets its data (None when
    there is none) and returns the new data, or None to leave it as it is. A race lost (another
    writer first) reads it again and asks `change` again, up to `tries` times.

    Returns the data as this call left it and whether this call wrote it; (None, False) when every
    try lost its race.
    """
    for _ in range(tries):
        doc = store.get(kind, key)
        current = None if doc is None else doc.data
        new = change(current)
        if new is None:
            return current, False
        if doc is None:
            if store.create(kind, key, new) is None:
                continue
        else:
            try:
                store.update(doc, new)
            except VersionConflict:
                continue
        return new, True
    return None, False
