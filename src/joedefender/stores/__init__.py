"""Where the workflow keeps its state: the ports, and the embedded SQLite adapter."""

from joedefender.stores.base import (
    Document,
    HistoryEntry,
    MachineLeases,
    SchemaVersionError,
    StateStore,
    Store,
    StoreError,
    StoreUnavailable,
    VersionConflict,
    WorkItem,
    WorkQueue,
)
from joedefender.stores.sqlite import SqliteStore

__all__ = [
    "Document",
    "HistoryEntry",
    "MachineLeases",
    "SchemaVersionError",
    "SqliteStore",
    "StateStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "VersionConflict",
    "WorkItem",
    "WorkQueue",
]
