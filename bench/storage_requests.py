"""Every Azure Storage request a process makes, counted by operation as it is answered.

The Azure SDKs (azure-data-tables, azure-storage-queue) send through azure-core's
`RequestsTransport`; `install` wraps its `send`, so every request that reached the storage
service and got an answer is counted once, whoever made it (the store, the shared rate budget,
the Functions host's queue listener), retries included. A request that never got an answer (a
refused connection) is not counted: it did not reach the service.

Operations are named by service and kind: `tables.get` (a point read), `tables.query`,
`tables.batch` (an entity-group transaction), `tables.insert`, `tables.update`, `tables.delete`,
`tables.create`; `queues.send`, `queues.receive`, `queues.peek`, `queues.delete`,
`queues.update`, `queues.create`. Table requests name their partition where the URL shows it
(`tables.get:limits`), so the shared Defender budget and the machine leases stand apart.
"""

from __future__ import annotations

import re
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlsplit

_PARTITION = re.compile(r"PartitionKey(?:=|%3D|\s+eq\s+)'([^']*)'", re.IGNORECASE)


def operation(method: str, url: str) -> str:
    """The operation a storage request is, from its method and URL."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    query = unquote(parts.query)
    method = method.upper()
    if "/messages" in path or (method == "PUT" and "(" not in path):  # a queue's messages, or its creation
        return _queue_operation(method, path, query)
    return _table_operation(method, path, query)


def _queue_operation(method: str, path: str, query: str) -> str:
    if "/messages" not in path:
        return "queues.create" if method == "PUT" else f"queues.{method.lower()}"
    if method == "POST":
        return "queues.send"
    if method == "GET":
        return "queues.peek" if "peekonly=true" in query.lower() else "queues.receive"
    return {"DELETE": "queues.delete", "PUT": "queues.update"}.get(method, f"queues.{method.lower()}")


def _table_operation(method: str, path: str, query: str) -> str:
    if path.endswith("/$batch"):
        return "tables.batch"
    if path.rstrip("/").endswith("/Tables") or "/Tables(" in path:
        return "tables.create" if method == "POST" else f"tables.{method.lower()}"
    found = _PARTITION.search(path) or _PARTITION.search(query)
    where = f":{found.group(1)}" if found else ""
    point = "RowKey=" in path
    if method == "GET":
        return f"tables.get{where}" if point else f"tables.query{where}"
    kind = {"POST": "insert", "PUT": "update", "MERGE": "update", "PATCH": "update", "DELETE": "delete"}
    return f"tables.{kind.get(method, method.lower())}{where}"


def caller() -> str:
    """Where in joedefender a request was made: the innermost pipeline or host frame, and the
    innermost adapter frame (for `--trace`, to see which step's which read a request is)."""
    frame: FrameType | None = sys._getframe(2)
    adapters: list[str] = []
    outer = ""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("joedefender.adapters") and "_table" not in module:
            adapters.append(frame.f_code.co_name)
        elif module.startswith(("joedefender.pipeline", "joedefender.hosts")) and "lease" not in module:
            outer = f"{module.rsplit('.', 1)[-1]}.{frame.f_code.co_name}"
            break
        frame = frame.f_back
    return f"{outer or '?'} > {'<'.join(adapters[:4]) or '?'}"


class RequestCounter:
    """Counts of answered storage requests by operation; threads can opt out (`ignored`);
    with `trace`, also by operation and caller."""

    def __init__(self, *, trace: bool = False) -> None:
        self._counts: Counter[str] = Counter()
        self._callers: Counter[str] = Counter()
        self._trace = trace
        self._lock = threading.Lock()
        self._local = threading.local()

    def add(self, method: str, url: str) -> None:
        if getattr(self._local, "ignored", False):
            return
        name = operation(method, url)
        where = f"{name} {caller()}" if self._trace else ""
        with self._lock:
            self._counts[name] += 1
            if where:
                self._callers[where] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def callers(self) -> dict[str, int]:
        with self._lock:
            return dict(self._callers)

    @contextmanager
    def ignored(self) -> Iterator[None]:
        """Requests this thread makes in the block are not counted (the bench's own looks)."""
        before = getattr(self._local, "ignored", False)
        self._local.ignored = True
        try:
            yield
        finally:
            self._local.ignored = before


_installed: RequestCounter | None = None


def install(*, trace: bool = False) -> RequestCounter:
    """Count every storage request this process makes from now on (once per process)."""
    global _installed  # noqa: PLW0603 - one transport patch per process
    if _installed is None:
        _installed = RequestCounter(trace=trace)
        _patch(_installed)
    return _installed


@contextmanager
def counting() -> Iterator[RequestCounter]:
    """Count the storage requests this process makes inside the block (for tests)."""
    from azure.core.pipeline.transport import RequestsTransport

    counter = RequestCounter()
    send = _patch(counter)
    try:
        yield counter
    finally:
        RequestsTransport.send = send


def _patch(counter: RequestCounter) -> Any:
    """Wrap the transport's `send` to count into `counter`; returns the `send` it wrapped."""
    from azure.core.pipeline.transport import RequestsTransport

    send = RequestsTransport.send

    def counted(self: Any, request: Any, **kwargs: Any) -> Any:
        response = send(self, request, **kwargs)
        counter.add(str(request.method), str(request.url))
        return response

    RequestsTransport.send = counted
    return send


def per_alert(counts: dict[str, int], alerts: int) -> dict[str, float]:
    """Counts per alert, by operation, with their total under "total"."""
    shown = {name: round(n / max(1, alerts), 2) for name, n in sorted(counts.items())}
    return {"total": round(sum(counts.values()) / max(1, alerts), 2), **shown}
