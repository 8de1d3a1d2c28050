"""A webhook on a real socket over a SQLite store, with no emulators: what the webhook tests,
the descriptor probe and the load benchmark start."""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from joedefender.adapters.sqlite import SqliteStore
from joedefender.hosts.standalone.webhook import TlsFiles, Webhook, WebhookLimits
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.context import Context
from joedefender.pipeline.facade import Application
from tests.fakes import FakeDefender, FakeSandbox

SECRET = "a-webhook-secret-of-enough-length"


@contextmanager
def running_webhook(
    db: Path,
    *,
    secret: str | None = SECRET,
    limits: WebhookLimits = WebhookLimits(),  # noqa: B008
    tls: TlsFiles | None = None,
    host: str = "127.0.0.1",
) -> Iterator[tuple[Webhook, SqliteStore]]:
    store = SqliteStore(db)
    app = Application(Context(store, FakeDefender(), FakeSandbox(), PipelineConfig()))
    webhook = Webhook(app, secret=secret, host=host, port=0, limits=limits, tls=tls)
    webhook.start()
    try:
        yield webhook, store
    finally:
        webhook.stop()
        store.close()


def alert_id(n: int) -> str:
    return f"da{n:018d}_{n % 9973}"


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _deliver(url: str, numbers: range, statuses: dict[int, int], lock: threading.Lock) -> None:
    # a new connection each time (Connection: close): a server with a thread per connection shows its leak
    headers = {"Content-Type": "application/json", "x-functions-key": SECRET, "Connection": "close"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for n in numbers:
            response = client.post("/api/alerts", content=json.dumps({"id": alert_id(n)}).encode())
            with lock:
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1


def probe(db: Path, total: int, limit: int, clients: int = 8) -> dict[str, Any]:
    """Deliver `total` alerts with the open-file limit at `limit`; descriptor counts along the way."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    counts = []
    with running_webhook(db) as (webhook, store):
        rounds = 5
        per_round = total // rounds
        for r in range(rounds):
            share = per_round // clients
            threads = [
                threading.Thread(
                    target=_deliver,
                    args=(
                        webhook.url,
                        range(r * per_round + c * share, r * per_round + (c + 1) * share),
                        statuses,
                        lock,
                    ),
                )
                for c in range(clients)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            counts.append(open_descriptors())
        recorded = len(store.list("alert"))
        queued = store.pending()
    return {"statuses": statuses, "descriptors": counts, "recorded": recorded, "queued": queued}


if __name__ == "__main__":
    print(json.dumps(probe(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
