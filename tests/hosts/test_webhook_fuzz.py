"""Bounded fuzz and load on the webhook: any body gets 202 or 400 (never a 5xx nor a dropped
connection), a 202 always leaves the alert with its triage, and a few hundred clients at once
are all answered. Over real sockets on 127.0.0.1, bounded in examples and time."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from joedefender.adapters.sqlite import SqliteStore
from joedefender.hosts.standalone.webhook import Webhook
from tests.hosts.webhook_rig import SECRET, alert_id, running_webhook

_HEADERS = {"Content-Type": "application/json", "x-functions-key": SECRET}

_ids = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_\-]{0,40}\Z"),  # valid
    st.text(max_size=50),
    st.integers(),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
)
_machines = st.one_of(st.none(), st.from_regex(r"\A[0-9a-f]{40}\Z"), st.text(max_size=45), st.integers())
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
_json = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
_trigger = st.fixed_dictionaries({"id": _ids}, optional={"machineId": _machines, "extra": _json})
_logic_app = st.fixed_dictionaries(
    {"alert": st.one_of(_trigger, _json)}, optional={"threat_name": _scalars, "detection_source": _scalars}
)
_bodies = st.one_of(
    _trigger.map(lambda b: json.dumps(b).encode()),
    _logic_app.map(lambda b: json.dumps(b).encode()),
    _json.map(lambda b: json.dumps(b).encode()),
    st.binary(max_size=300),
)


@pytest.fixture(scope="module")
def hook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Webhook, SqliteStore, httpx.Client]]:
    folder = tmp_path_factory.mktemp("fuzz")
    with (
        running_webhook(folder / "state.db") as (webhook, store),
        httpx.Client(base_url=webhook.url, headers=_HEADERS, timeout=10) as client,
    ):
        yield webhook, store, client


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_any_body_gets_202_or_400_and_a_202_leaves_the_alert_with_its_triage(
    hook: tuple[Webhook, SqliteStore, httpx.Client], body: bytes
) -> None:
    _, store, client = hook
    response = client.post("/api/alerts", content=body)
    assert response.status_code in (202, 400), response.text
    answer: dict[str, Any] = response.json()
    if response.status_code == 400:
        assert answer["error"]
        return
    alert = answer["alertId"]
    assert store.get("alert", alert) is not None
    queued = {item.key for item in store.items()}
    triaged = store.history(f"alert:{alert}")
    assert f"triage:{alert}" in queued or triaged


async def _deliver_at_once(host: str, port: int, count: int) -> list[int]:
    """`count` clients, each on its own connection, all connected before any sends its request."""
    connections = [await asyncio.open_connection(host, port) for _ in range(count)]
    statuses: list[int] = []

    async def one(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = json.dumps({"id": alert_id(n % (count // 2))}).encode()  # every alert delivered twice
        writer.write(
            (
                f"POST /api/alerts HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"x-functions-key: {SECRET}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + body
        )
        answer = await reader.read()
        statuses.append(int(answer.split(b" ", 2)[1]))
        writer.close()

    await asyncio.wait_for(asyncio.gather(*(one(n, *pair) for n, pair in enumerate(connections))), timeout=60)
    return statuses


def test_three_hundred_concurrent_clients_are_all_answered(tmp_path: Path) -> None:
    with running_webhook(tmp_path / "state.db") as (webhook, store):
        host, port = webhook.url.removeprefix("http://").rsplit(":", 1)
        statuses = asyncio.run(_deliver_at_once(host, int(port), 300))
        assert statuses == [202] * 300
        assert len(store.list("alert")) == 150
        assert store.pending() == 150


def test_slow_clients_do_not_keep_a_delivery_waiting(tmp_path: Path) -> None:
    """100 clients trickle their bodies; a delivery among them is answered at once."""
    with running_webhook(tmp_path / "state.db") as (webhook, store):
        host, port = webhook.url.removeprefix("http://").rsplit(":", 1)
        slow = []
        for _ in range(100):
            raw = socket.create_connection((host, int(port)), timeout=10)
            raw.sendall(
                f"POST /api/alerts HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"x-functions-key: {SECRET}\r\nContent-Length: 40\r\n\r\n{{".encode()
            )
            slow.append(raw)
        try:
            response = httpx.post(f"{webhook.url}/api/alerts", json={"id": alert_id(1)}, headers=_HEADERS, timeout=5)
            assert response.status_code == 202
        finally:
            for raw in slow:
                raw.close()
        assert [doc.key for doc in store.list("alert")] == [alert_id(1)]
