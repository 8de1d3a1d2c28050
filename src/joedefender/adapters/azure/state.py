"""Documents and history lines as entities of the state partition.

A document is `d|<kind>|<key>` with its version, time and JSON text; a history line is
`h|<subject>|<sequence>`, the sequence ordering lines of the same time as they were appended.
The keys are escaped (`_table.escape`), so listing a kind by key prefix is one RowKey range.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from joedefender.adapters._writes import decode
from joedefender.adapters.azure._table import Entity, row_key, text_of, text_properties
from joedefender.pipeline.ports import Document, HistoryEntry

DOCUMENT = "d"
HISTORY = "h"
WORK = "w"
OUTBOX = "o"

_sequence = itertools.count()
_instance = uuid.uuid4().hex[:8]


def document_row(kind: str, key: str) -> str:
    return row_key(DOCUMENT, kind, key)


def documents_prefix(kind: str, prefix: str) -> str:
    return row_key(DOCUMENT, kind, "") + row_key(prefix)


def document_properties(kind: str, key: str, version: int, text: str, at: float) -> Entity:
    return {
        "kind": kind,
        "key": key,
        "version": version,
        "at": float(at),
        **text_properties(text, f"{kind} {key!r}"),
    }


def document_of(entity: Mapping[str, Any]) -> Document:
    return decode(str(entity["kind"]), str(entity["key"]), int(entity["version"]), text_of(entity), float(entity["at"]))


def history_row(subject: str) -> str:
    """A new line's key: the wall clock in ns, then a counter, then this process, so lines of
    one process keep their order and no two writers collide."""
    return row_key(HISTORY, subject, f"{time.time_ns():020d}{next(_sequence):08d}{_instance}")


def history_prefix(subject: str) -> str:
    return row_key(HISTORY, subject, "")


def history_properties(subject: str, at: float, step: str, outcome: str, detail: str) -> Entity:
    text = json.dumps([step, outcome, detail])
    return {"subject": subject, "at": float(at), **text_properties(text, f"a history line of {subject!r}")}


def history_of(entity: Mapping[str, Any]) -> HistoryEntry:
    step, outcome, detail = json.loads(text_of(entity))
    return HistoryEntry(
        subject=str(entity["subject"]), at=float(entity["at"]), step=step, outcome=outcome, detail=detail
    )


def work_row(key: str) -> str:
    return row_key(WORK, key)


def work_prefix() -> str:
    return row_key(WORK, "")


def outbox_row() -> str:
    return row_key(OUTBOX, uuid.uuid4().hex)


def outbox_prefix() -> str:
    return row_key(OUTBOX, "")


def outbox_properties(messages: list[tuple[str, float]], at: float) -> Entity:
    return {"at": float(at), **text_properties(json.dumps(messages), "the outbox of a unit of work")}


def outbox_messages(entity: Mapping[str, Any]) -> list[tuple[str, float]]:
    return [(str(key), float(due)) for key, due in json.loads(text_of(entity))]
