"""Documents and history lines on Azure: what a unit of work writes besides the work index.

A document's update is conditional on the ETag of the version it was read at; this store keeps
the ETag of every document it read or wrote (`_etags`), so an update needs no read first, and
a version this store knows is gone fails at once. History lines are new entities, never in
conflict.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from joedefender.adapters._writes import AppendHistory, Create, Operation, Update, Written, decode
from joedefender.adapters.azure import state as rows
from joedefender.adapters.azure._table import Lost, Partition, TableOperation, etag, put
from joedefender.pipeline.ports import AlreadyExists, Document, HistoryEntry, VersionConflict

_MAX_ETAGS = 10_000


class Documents:
    """The `StateStore` port's entities in the state partition."""

    def __init__(self, state: Partition) -> None:
        self._state = state
        self._etags: dict[tuple[str, str], tuple[int, str]] = {}  # (kind, key) -> (version, etag)

    def writes(
        self, operations: Sequence[Operation], now: float
    ) -> tuple[list[TableOperation], list[Create | Update], list[rows.Line], Written]:
        """A unit of work's document writes (each checked against the version it was read at),
        what each came from, its history lines, and the documents as they will be once written.
        VersionConflict for an update of a version this store knows is gone."""
        documents: list[TableOperation] = []
        sources: list[Create | Update] = []
        lines: list[rows.Line] = []
        written: Written = {}
        for operation in operations:
            match operation:
                case Create(kind, key, text):
                    documents.append(put(self._document(kind, key, 1, text, now), None))
                    sources.append(operation)
                    written[kind, key] = decode(kind, key, 1, text, now)
                case Update(kind, key, version, text):
                    tag = self._etag(kind, key, version)
                    documents.append(put(self._document(kind, key, version + 1, text, now), tag))
                    sources.append(operation)
                    written[kind, key] = decode(kind, key, version + 1, text, now)
                case AppendHistory(subject, step, outcome, detail, at):
                    when = now if at is None else float(at)
                    lines.append(rows.Line(rows.history_row(subject), subject, when, step, outcome, detail))
        return documents, sources, lines, written

    def line(self, line: rows.Line) -> TableOperation:
        properties = rows.history_properties(line.subject, line.at, line.step, line.outcome, line.detail)
        return ("create", self._state.entity(line.row, **properties))

    def written(
        self, sources: Iterable[Create | Update], written: Written, results: Iterable[Mapping[str, Any]]
    ) -> None:
        """Keep the ETags a committed transaction gave the documents it wrote."""
        for source, result in zip(sources, results, strict=False):
            self._remember(source.kind, source.key, written[source.kind, source.key].version, result["etag"])

    def _document(self, kind: str, key: str, version: int, text: str, now: float) -> dict[str, Any]:
        properties = rows.document_properties(kind, key, version, text, now)
        return self._state.entity(rows.document_row(kind, key), **properties)

    def _etag(self, kind: str, key: str, version: int) -> str:
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

    def _remember(self, kind: str, key: str, version: int, tag: object) -> None:
        """Keep the ETag of what was read or written, so an update needs no read first."""
        if len(self._etags) >= _MAX_ETAGS:
            self._etags.clear()
        self._etags[kind, key] = (version, str(tag))

    def raise_conflict(self, lost: Lost, sources: Sequence[Create | Update]) -> None:
        """Raise AlreadyExists or VersionConflict if a document lost the transaction its race;
        return if the work index did (the caller tries again)."""
        index = lost.index
        if index is None:  # not said: look at each document
            suspects = list(sources)
        else:  # an entry past the documents is a history line, the work index or the redo
            suspects = [sources[index]] if index < len(sources) else []
        for source in suspects:
            match source:
                case Create(kind, key) if index is not None or self._state.get(rows.document_row(kind, key)):
                    raise AlreadyExists(kind, key) from None
                case Update(kind, key, version):
                    self._etags.pop((kind, key), None)
                    stored = self._state.get(rows.document_row(kind, key)) if index is None else None
                    if index is not None or stored is None or int(stored["version"]) != version:
                        raise VersionConflict(kind, key, version) from None

    # -- reads ------------------------------------------------------------------------------

    def get(self, kind: str, key: str) -> Document | None:
        entity = self._state.get(rows.document_row(kind, key))
        if entity is None:
            return None
        doc = rows.document_of(entity)
        self._remember(kind, key, doc.version, etag(entity))
        return doc

    def list(self, kind: str, prefix: str = "") -> builtins.list[Document]:
        found = []
        for entity in self._state.rows(rows.documents_prefix(kind, prefix)):
            doc = rows.document_of(entity)
            self._remember(kind, doc.key, doc.version, etag(entity))
            found.append(doc)
        return sorted(found, key=lambda doc: doc.key)  # code point order, as SQLite's BINARY on UTF-8

    def history(self, subject: str) -> builtins.list[HistoryEntry]:
        found = self._state.rows(rows.history_prefix(subject))
        found.sort(key=lambda entity: (float(entity["at"]), str(entity["RowKey"])))
        return [rows.history_of(entity) for entity in found]
