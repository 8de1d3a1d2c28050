"""One partition of an Azure table, as the store uses it: keys, long values, errors, transactions.

Azure Tables forbids `/ \\ # ?` and control characters in keys, holds at most 64 KiB (32K UTF-16
characters) in a string property and 1 MiB in an entity, and runs a transaction over at most 100
entities of one partition. This module is where those limits are met, so the rest of the adapter
deals in keys, text and whole operations.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from joedefender.adapters.azure import _sdk
from joedefender.pipeline.ports import StoreError, StoreUnavailable

MAX_TRANSACTION = 100  # entities in one entity-group transaction (Azure Tables' limit)
_MAX_KEY = 512  # characters: a PartitionKey or RowKey holds 1 KiB of UTF-16
_CHUNK = 32_000  # characters of ASCII text per string property (64 KiB of UTF-16)
_BINARY_CHUNK = 64_000  # bytes per binary property (64 KiB)
_MAX_CHUNKS = 15  # 15 x 64 KB stays under the 1 MiB an entity may hold, with room for the rest
# Characters kept as they are in keys: printable ASCII but the forbidden `/ \ # ?`, our escape
# `%`, our separator `|` and `~` (so that `prefix + "~"` bounds every key that starts with prefix).
_KEPT = frozenset(chr(c) for c in range(0x20, 0x7E)) - set("/\\#?%|")
_UNAVAILABLE = {408, 429, 500, 502, 503, 504}

_LOST = (404, 409, 412)  # not found, exists already, changed since read

_sdk.run_batch_policies_in_turn()

Entity = dict[str, Any]
TableOperation = tuple[Any, ...]  # what TableClient.submit_transaction takes


class Lost(Exception):
    """A conditional write lost a race: the entity of operation `index` was created, changed
    or deleted by someone else first (`status` 409, 412 or 404). Nothing was written."""

    def __init__(self, status: int, index: int | None) -> None:
        super().__init__(f"lost a race: {status} at operation {index}")
        self.status = status
        self.index = index


def escape(text: str) -> str:
    """`text` as a key part: a fixed-width escape per character keeps the mapping injective and
    prefix-preserving (`escape(p)` starts `escape(k)` exactly when `p` starts `k`)."""
    return "".join(ch if ch in _KEPT else f"%{ord(ch):06x}" for ch in text)


def row_key(*parts: str) -> str:
    key = "|".join(escape(part) for part in parts)
    if len(key) > _MAX_KEY:
        raise StoreError(f"a key of {len(key)} characters (escaped) is longer than Azure Tables allows ({_MAX_KEY})")
    return key


def text_properties(text: str, what: str) -> Entity:
    """Long text over several properties (`t0`, `t1`...; compressed into `z0`... if that is too
    long), so a document may outgrow one property. `text` is ASCII (JSON with ensure_ascii)."""
    if len(text) <= _CHUNK * _MAX_CHUNKS:
        chunks: Sequence[str | bytes] = [text[i : i + _CHUNK] for i in range(0, max(len(text), 1), _CHUNK)]
        name = "t"
    else:
        packed = zlib.compress(text.encode("utf-8"), 6)
        if len(packed) > _BINARY_CHUNK * _MAX_CHUNKS:
            raise StoreError(
                f"{what} is {len(text)} characters of JSON ({len(packed)} bytes compressed): "
                f"more than one Azure Tables entity holds ({_BINARY_CHUNK * _MAX_CHUNKS} bytes)"
            )
        chunks = [packed[i : i + _BINARY_CHUNK] for i in range(0, len(packed), _BINARY_CHUNK)]
        name = "z"
    return {"n": len(chunks), **{f"{name}{i}": chunk for i, chunk in enumerate(chunks)}}


def text_of(entity: Mapping[str, Any]) -> str:
    count = int(entity["n"])
    if "z0" in entity:
        return zlib.decompress(b"".join(bytes(entity[f"z{i}"]) for i in range(count))).decode("utf-8")
    return "".join(str(entity[f"t{i}"]) for i in range(count))


def etag(entity: Any) -> str:
    return str(entity.metadata["etag"])


def if_unchanged(tag: str) -> dict[str, Any]:
    """The options of an update or delete that applies only if the entity still has etag `tag`."""
    return {"etag": tag, "match_condition": MatchConditions.IfNotModified}


def put(entity: Entity, tag: str | None) -> TableOperation:
    """Create the entity (tag None: it must not exist) or replace it if it is still at `tag`."""
    if tag is None:
        return ("create", entity)
    return ("update", entity, {"mode": UpdateMode.REPLACE, **if_unchanged(tag)})


@contextmanager
def mapped(what: str) -> Iterator[None]:
    """Azure SDK errors as the store's: what may pass (throttling, 5xx, the network) is
    StoreUnavailable; anything else StoreError. Only status and error code are kept: the SDK's
    messages can carry request URLs."""
    try:
        yield
    except TableTransactionError:
        raise  # `Partition.submit` sorts out what failed
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise StoreUnavailable(f"{what}: Azure Storage did not answer ({type(exc).__name__})") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        code = getattr(exc, "error_code", None) or "no error code"
        kind = StoreUnavailable if status in _UNAVAILABLE else StoreError
        raise kind(f"{what}: Azure Storage answered {status} ({code})") from exc


class Partition:
    """The entities of one partition of a table."""

    def __init__(self, table: TableClient, partition: str) -> None:
        self.table = table
        self.name = partition

    def entity(self, row: str, **properties: Any) -> Entity:
        return {"PartitionKey": self.name, "RowKey": row, **properties}

    def get(self, row: str) -> Any | None:
        """The entity (with `.metadata["etag"]`), or None."""
        with mapped(f"reading {self.table.table_name}"):
            try:
                return self.table.get_entity(self.name, row)
            except ResourceNotFoundError:
                return None

    def rows(self, prefix: str, condition: str = "") -> list[Any]:
        """The entities whose RowKey starts with `prefix` (already escaped), in RowKey order;
        `condition` is an extra OData filter on their properties (numbers only)."""
        query = "PartitionKey eq @partition and RowKey ge @low and RowKey lt @high"
        if condition:
            query += f" and {condition}"
        parameters = {"partition": self.name, "low": prefix, "high": prefix + "~"}
        with mapped(f"reading {self.table.table_name}"):
            return list(self.table.query_entities(query, parameters=parameters))

    def submit(self, operations: Sequence[TableOperation]) -> list[Mapping[str, Any]]:
        """One entity-group transaction: all of it or (raising Lost, or StoreError) none.
        Returns what the service answered for each operation (its `etag`)."""
        if len(operations) > MAX_TRANSACTION:
            raise StoreError(
                f"a unit of work of {len(operations)} entities is more than one Azure Tables transaction "
                f"holds ({MAX_TRANSACTION}): nothing was written"
            )
        try:
            with mapped(f"writing {self.table.table_name}"):
                if len(operations) == 1:  # the plain request is a third cheaper than a batch of one
                    return [self._one(operations[0])]
                return list(self.table.submit_transaction(list(operations)))
        except TableTransactionError as exc:
            status = exc.status_code or 0
            if status in _LOST:
                raise Lost(status, getattr(exc, "index", None)) from exc
            code = getattr(exc, "error_code", None) or "no error code"
            raise StoreError(f"writing {self.table.table_name}: Azure Storage answered {status} ({code})") from exc

    def _one(self, operation: TableOperation) -> Mapping[str, Any]:
        kind, entity, *rest = operation
        options: dict[str, Any] = rest[0] if rest else {}
        try:
            if kind == "create":
                return self.table.create_entity(entity)
            if kind == "update":
                return self.table.update_entity(entity, **options)
            # delete: the SDK takes a missing entity as deleted; only a changed one loses
            self.table.delete_entity(entity["PartitionKey"], entity["RowKey"], **options)
            return {}
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as exc:
            raise Lost(exc.status_code or 0, 0) from exc

    def delete(self, row: str) -> None:
        with mapped(f"deleting from {self.table.table_name}"):
            self.table.delete_entity(self.name, row)
