"""Webhook throughput: requests per second and p50/p99 latency at a given number of concurrent clients.

The webhook (uvicorn, the SQLite store, intake: one unit of work per delivery) runs in its own
process on 127.0.0.1; this process is the clients, each on its own keep-alive connection, every
request a new alert (so every one is a committed write, the expensive case). No Defender or Joe
call is made: the webhook only records and queues, as in production.

    .venv/bin/python -m bench.webhook_load --clients 50 200 --requests 4000 --json

`--idle 1100` first opens that many connections from 127.0.0.1 that send nothing and holds them
through the run, the clients connecting from 127.0.0.2: the latency a flood leaves to others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from joedefender.adapters.sqlite import SqliteStore
from joedefender.hosts.standalone.webhook import Webhook, WebhookLimits
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.context import Context
from joedefender.pipeline.facade import Application

SECRET = "bench-webhook-secret-0123456789"


def _serve(db: str, ready: Any, stop: Any) -> None:
    """The server process: a webhook over a fresh store, until told to stop."""
    store = SqliteStore(db)
    # Intake touches only the store; the ports it never calls are left out.
    intake = Application(Context(store, cast(Any, None), cast(Any, None), PipelineConfig()))
    webhook = Webhook(intake, secret=SECRET, host="127.0.0.1", port=0, limits=WebhookLimits(max_connections=2000))
    webhook.start()
    ready.send(webhook.url)
    stop.wait()
    webhook.stop()
    store.close()


async def _client(
    host: str, port: int, numbers: list[int], latencies: list[float], statuses: list[int], source: str | None
) -> None:
    """One client on one keep-alive connection, HTTP/1.1 written by hand: httpx's async pool costs
    more CPU per request than the webhook does, and on a small machine it would be what is measured."""
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0) if source else None)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for n in numbers:
            body = json.dumps({"id": f"da{n:018d}_{n % 9973}"}).encode()
            request = (
                f"POST /api/alerts HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"x-functions-key: {SECRET}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses.append(int(head.split(b" ", 2)[1]))
    finally:
        writer.close()


def _idle(host: str, port: int, count: int) -> list[socket.socket]:
    """Connections from 127.0.0.1 that send nothing, held by the caller."""
    held = []
    for _ in range(count):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.bind(("127.0.0.1", 0))
        raw.connect((host, port))
        held.append(raw)
    return held


async def _load(url: str, clients: int, requests: int, first: int, idle: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: list[int] = []
    host, port = url.removeprefix("http://").rsplit(":", 1)
    shares = [list(range(first + c, first + requests, clients)) for c in range(clients)]
    held = _idle(host, int(port), idle)
    source = "127.0.0.2" if idle else None
    started = time.perf_counter()
    try:
        await asyncio.gather(*(_client(host, int(port), share, latencies, statuses, source) for share in shares))
    finally:
        for raw in held:
            raw.close()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "clients": clients,
        "idle_connections": idle,
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
    }


def run(clients: list[int], requests: int, repeats: int, idle: int = 0) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    results: dict[str, Any] = {"runs": [], "median": {}}
    with tempfile.TemporaryDirectory(prefix="joedefender-bench-") as folder:
        for repeat in range(repeats):
            parent, child = context.Pipe()
            stop = context.Event()
            server = context.Process(target=_serve, args=(str(Path(folder) / f"state-{repeat}.db"), child, stop))
            server.start()
            try:
                url = parent.recv()
                first = 0
                for count in clients:
                    result = asyncio.run(_load(url, count, requests, first, idle))
                    first += requests
                    results["runs"].append({"repeat": repeat, **result})
            finally:
                stop.set()
                server.join(timeout=30)
    for count in clients:
        runs = [r for r in results["runs"] if r["clients"] == count]
        results["median"][str(count)] = {
            key: statistics.median(r[key] for r in runs) for key in ("requests_per_second", "p50_ms", "p99_ms")
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--requests", type=int, default=4000, help="per run and client count")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle", type=int, default=0, help="idle connections held from 127.0.0.1 meanwhile")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = run(args.clients, args.requests, args.repeats, args.idle)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for count, median in results["median"].items():
        print(
            f"{count:>4} clients: {median['requests_per_second']:8.1f} req/s, "
            f"p50 {median['p50_ms']:7.2f} ms, p99 {median['p99_ms']:7.2f} ms (median of {args.repeats})"
        )


if __name__ == "__main__":
    main()
