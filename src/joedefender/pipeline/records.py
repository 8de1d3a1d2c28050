"""Typed access to the store's versioned documents: load a record, change it, save it or lose the race."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from joedefender.stores.base import Document, StateStore

M = TypeVar("M", bound=BaseModel)


@dataclass
class Versioned(Generic[M]):
    """A record and the document version it was read at; saving it fails if someone saved since."""

    record: M
    doc: Document


class Repository(Generic[M]):
    def __init__(self, store: StateStore, kind: str, model: type[M]) -> None:
        self._store = store
        self._kind = kind
        self._model = model

    def get(self, key: str) -> Versioned[M] | None:
        doc = self._store.get(self._kind, key)
        return None if doc is None else Versioned(self._model.model_validate(doc.data), doc)

    def create(self, key: str, record: M) -> Versioned[M] | None:
        """None when the key exists already (someone else created it first)."""
        doc = self._store.create(self._kind, key, record.model_dump(mode="json"))
        return None if doc is None else Versioned(record, doc)

    def save(self, versioned: Versioned[M]) -> Versioned[M]:
        """Raises VersionConflict when the record changed since it was read."""
        doc = self._store.update(versioned.doc, versioned.record.model_dump(mode="json"))
        versioned.doc = doc
        return versioned

    def list(self, prefix: str = "") -> list[Versioned[M]]:
        return [Versioned(self._model.model_validate(d.data), d) for d in self._store.list(self._kind, prefix)]
