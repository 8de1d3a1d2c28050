"""What one connection to the webhook, and one client address, may hold.

uvicorn has one connection limit (`limit_concurrency`), counted after accept and after the TLS
handshake, and beyond it every request gets 503: 1,100 connections that send nothing, all from
one address and needing no secret, kept every real delivery out until they timed out, and
reopening them kept it out for good. The gate here sits under uvicorn's protocol, at accept,
before a byte is read or a TLS handshake started:

- a connection must send its first byte (plain http) or finish its TLS handshake within a short
  deadline, then its whole request head within the head deadline (and between requests, the
  keep-alive one);
- one client address (an IPv6 client by its /64, which one host usually holds whole) may hold at
  most `per_client` connections;
- the whole server holds at most `total`.

Over a cap, the connection that has waited longest without a request head (idle, still
handshaking, or trickling its head) is closed to make room: over the client's cap, one of that
client's; over the total, one of the client holding the most. Only when none is waiting is the
new connection the one closed. So connections that send nothing can never keep out a request
from anyone else, and one address, however many connections it opens, holds at most its share.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("joedefender.webhook")
_IPV6_CLIENT_BITS = 64  # an IPv6 host is given a /64: counting single addresses would not bind it
_WARN_EVERY = 60.0  # seconds between two warnings that connections are being shed


def client_of(peer: Any) -> str:
    """The client a connection is counted against: its IPv4 address, or its IPv6 /64."""
    host = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        prefix = int(address) >> (128 - _IPV6_CLIENT_BITS) << (128 - _IPV6_CLIENT_BITS)
        return str(ipaddress.IPv6Network((prefix, _IPV6_CLIENT_BITS)))
    return str(address)


@dataclass(frozen=True)
class GateCounts:
    """The gate's own accounting, for tests, the benchmark and the logs."""

    open: int
    by_client: dict[str, int]
    admitted: int
    shed: int  # closed while waiting, to make room for a newer connection
    refused: int  # closed at once: over a cap, and nothing waiting to give way


class ConnectionGate:
    """Counts connections per client and in all, and picks which one gives way over a cap.

    Called from the server's event loop; `counts` may be read from any thread."""

    def __init__(self, *, per_client: int, total: int) -> None:
        self._per_client = per_client
        self._total = total
        self._client: dict[GatedConnection, str] = {}
        self._open: Counter[str] = Counter()
        # Connections without a request head, oldest first (dicts keep insertion order).
        self._waiting: dict[str, dict[GatedConnection, None]] = {}
        self._admitted = self._shed = self._refused = 0
        self._warned = float("-inf")
        self._lock = threading.Lock()

    def admit(self, connection: GatedConnection, client: str) -> bool:
        with self._lock:
            over_client = self._open[client] >= self._per_client and not self._give_way(client)
            over_total = not over_client and len(self._client) >= self._total and not self._give_way(self._busiest())
            if over_client or over_total:
                self._refused += 1
                admitted = False
            else:
                self._client[connection] = client
                self._open[client] += 1
                self._waiting.setdefault(client, {})[connection] = None
                self._admitted += 1
                admitted = True
        if not admitted:
            self._warn(client)
        return admitted

    def waiting(self, connection: GatedConnection) -> None:
        """The connection has no request head yet (new, or between two requests): it may give way."""
        with self._lock:
            client = self._client.get(connection)
            if client is not None:
                queue = self._waiting.setdefault(client, {})
                queue.pop(connection, None)
                queue[connection] = None  # to the end: it waits from now

    def working(self, connection: GatedConnection) -> None:
        """A request head is in: the connection is doing real work and is not shed."""
        with self._lock:
            client = self._client.get(connection)
            if client is not None:
                self._waiting.get(client, {}).pop(connection, None)

    def release(self, connection: GatedConnection) -> None:
        with self._lock:
            self._forget(connection)

    def counts(self) -> GateCounts:
        with self._lock:
            return GateCounts(
                open=len(self._client),
                by_client=dict(self._open),
                admitted=self._admitted,
                shed=self._shed,
                refused=self._refused,
            )

    def _busiest(self) -> str:
        """The client that holds the most connections with one waiting: the first to give way."""
        holders = [client for client, queue in self._waiting.items() if queue]
        return max(holders, key=self._open.__getitem__, default="")

    def _give_way(self, client: str) -> bool:
        queue = self._waiting.get(client)
        if not queue:
            return False
        oldest = next(iter(queue))
        self._forget(oldest)
        self._shed += 1
        oldest.shed()
        return True

    def _forget(self, connection: GatedConnection) -> None:
        client = self._client.pop(connection, None)
        if client is None:
            return
        self._open[client] -= 1
        if not self._open[client]:
            del self._open[client]
        queue = self._waiting.get(client, {})
        queue.pop(connection, None)
        if not queue:
            self._waiting.pop(client, None)

    def _warn(self, client: str) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            counts = self.counts()
            logger.warning(
                "webhook: connections over the caps (%d per client, %d in all): %d shed, %d refused so far; "
                "the latest refused from %s",
                self._per_client,
                self._total,
                counts.shed,
                counts.refused,
                client,
            )


def gated_protocol(
    gate: ConnectionGate,
    *,
    first_byte_timeout: float,
    head_timeout: float,
    tls: ssl.SSLContext | None,
) -> type[asyncio.Protocol]:
    """The protocol class uvicorn makes one of per accepted connection (its `http` setting)."""
    inner = _head_deadline_protocol(gate, head_timeout)

    class Gated(GatedConnection):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(inner(**kwargs), gate, first_byte_timeout, tls)

    return Gated


class GatedConnection(asyncio.Protocol):
    """Admits the raw connection through the gate, holds the first-byte (or handshake) deadline,
    does the TLS handshake itself (so a connection that never finishes one is counted and cut off
    like any other), then hands everything to uvicorn's h11 protocol."""

    def __init__(
        self, inner: HeadDeadline, gate: ConnectionGate, first_byte_timeout: float, tls: ssl.SSLContext | None
    ) -> None:
        self._inner = inner
        self._gate = gate
        self._first_byte_timeout = first_byte_timeout
        self._tls = tls
        self._raw: asyncio.Transport | None = None
        self._connected = False  # the inner protocol has its transport
        self._lost = False
        self._early: list[bytes] = []  # decrypted bytes that came before the handshake task resumed
        self._deadline: asyncio.TimerHandle | None = None
        self._handshake: asyncio.Task[None] | None = None
        inner.connection = self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        peer = transport.get_extra_info("peername")
        if not self._gate.admit(self, client_of(peer)):
            logger.debug("webhook: refused a connection from %s, over the connection caps", client_of(peer))
            transport.abort()
            return
        loop = asyncio.get_running_loop()
        if self._tls is None:
            self._deadline = loop.call_later(self._first_byte_timeout, self._silent)
            self._connect_inner(transport)
        else:
            transport.pause_reading()  # no byte reaches us before the TLS layer is in place
            self._handshake = loop.create_task(self._start_tls(transport, self._tls))

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            secured = await loop.start_tls(
                raw, self, context, server_side=True, ssl_handshake_timeout=self._first_byte_timeout
            )
        except Exception as exc:  # whatever ended the handshake, the connection is over
            logger.debug("webhook: TLS handshake with %s failed (%s)", _peer(raw), type(exc).__name__)
            self._gate.release(self)
            raw.abort()
            return
        if secured is None or self._lost:
            self._gate.release(self)
            return
        self._connect_inner(secured)
        early, self._early = self._early, []
        for data in early:
            self._inner.data_received(data)

    def _connect_inner(self, transport: asyncio.Transport) -> None:
        self._connected = True
        self._inner.connection_made(transport)

    def _silent(self) -> None:
        self._deadline = None
        if self._raw is not None and not self._raw.is_closing():
            logger.debug("webhook: closed %s, no byte within %g s", _peer(self._raw), self._first_byte_timeout)
            self._raw.close()

    def shed(self) -> None:
        """Close this connection to make room (the gate has already stopped counting it)."""
        logger.debug("webhook: shed %s, waiting without a request to make room", _peer(self._raw))
        if self._raw is not None:
            self._raw.close()

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._connected:
            self._inner.data_received(data)
        else:
            self._early.append(data)

    def eof_received(self) -> bool | None:
        if self._connected:
            self._inner.eof_received()
        return None  # as uvicorn's h11 protocol answers: the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._gate.release(self)
        if self._connected:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._connected:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._connected:
            self._inner.resume_writing()


def _peer(transport: asyncio.BaseTransport | None) -> str:
    peer = transport.get_extra_info("peername") if transport is not None else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "a client"


class HeadDeadline(H11Protocol):
    """uvicorn's h11 protocol, telling the gate when the connection waits and when it works."""

    connection: GatedConnection | None = None


def _head_deadline_protocol(gate: ConnectionGate, timeout: float) -> type[HeadDeadline]:
    """uvicorn's h11 protocol with a deadline for the request head: a connection that has not sent
    a whole request line and headers within `timeout` (after connecting, or after its last
    answer) is closed, however slowly it trickles bytes."""

    class HeadDeadlineWithin(HeadDeadline):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # uvicorn writes an answer's head and body apart; with Nagle on, the body waits for
            # the client's delayed ACK (40 ms on Linux) on every keep-alive request after the first.
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if exc is not None:
                logger.debug("webhook: %s hung up (%s)", _peer(self.transport), type(exc).__name__)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # A head still coming in keeps its place: trickling bytes does not make a connection new.
            if self.connection is not None and self.conn.their_state is not h11.IDLE:
                gate.working(self.connection)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()
            if self.connection is not None:
                if self.conn.their_state is h11.IDLE:
                    gate.waiting(self.connection)  # waits for its next request from now
                else:
                    gate.working(self.connection)  # a pipelined request is already in

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            # IDLE: no whole request head since connecting or since the last answer. A request whose
            # head is in is past IDLE, and its body has the app's own deadline.
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                logger.debug("webhook: closed %s, no request head within %g s", _peer(self.transport), timeout)
                self.transport.close()

    return HeadDeadlineWithin
