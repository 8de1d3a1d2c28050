"""The HTTP machinery both emulators share: a threaded HTTP/1.1 server on loopback, a router,
fault injection and per-endpoint call counters.

It is built on the standard library's server on purpose: the emulators must be able to misbehave
the way a real service does (drop a connection mid-request, stall, stream 200 MB), which is
simplest with the socket in hand.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import socket
import ssl
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.scenario import FaultRule

logger = logging.getLogger(__name__)

INSPECTION_PREFIX = "/_emulator/"


class ApiError(Exception):
    """Raised by a handler to answer with the emulated service's own error body."""

    def __init__(self, status: int, code: str | int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    route: str = ""

    def json(self, error_code: str | int = "InvalidRequestBody") -> Any:
        """The body as JSON, or an ApiError(400) with `error_code` naming what is wrong."""
        if not self.body:
            raise ApiError(400, error_code, "The request body is empty.")
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, error_code, f"The request body is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ApiError(400, error_code, "The request body nests too deeply.") from exc

    def form(self) -> dict[str, list[FormField]]:
        """Fields of an urlencoded or multipart/form-data body (what jbxapi and curl -F send)."""
        return parse_form(self.headers.get("Content-Type", ""), self.body)


@dataclass(frozen=True)
class FormField:
    name: str
    value: bytes
    filename: str | None = None

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", errors="replace")


def parse_form(content_type: str, body: bytes) -> dict[str, list[FormField]]:
    fields: dict[str, list[FormField]] = defaultdict(list)
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        if not message.is_multipart():
            return {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name is None:
                continue
            payload = part.get_payload(decode=True)
            content = payload if isinstance(payload, bytes) else b""
            fields[str(name)].append(FormField(str(name), content, part.get_filename()))
        return dict(fields)
    for key, text in parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True):
        fields[key].append(FormField(key, text.encode("utf-8")))
    return dict(fields)


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload, default=str).encode(), dict(headers or {}))


Handler = Callable[[Request], Response]
ErrorRenderer = Callable[[ApiError], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler


class Router:
    """Maps (method, path regex) to handlers; each route has a name that the counters use."""

    def __init__(self, case_insensitive: bool = False) -> None:
        self._routes: list[Route] = []
        self._flags = re.IGNORECASE if case_insensitive else 0

    def add(self, method: str, pattern: str, name: str, handler: Handler) -> None:
        self._routes.append(Route(method.upper(), re.compile(pattern, self._flags), name, handler))

    def route(self, method: str, pattern: str, name: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(method, pattern, name, handler)
            return handler

        return register

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The matching route, or None; raises ApiError(405) when only the method is wrong."""
        path_matched = False
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == method:
                return route, {k: v for k, v in match.groupdict().items() if v is not None}
            path_matched = True
        if path_matched:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {path}.")
        return None


class FaultInjector:
    """Decides, per request, whether a scenario fault applies; counts down `times` thread-safely."""

    def __init__(self, service: str, rules: Iterable[FaultRule] = (), seed: int = 0) -> None:
        self.service = service
        self._rules: list[tuple[FaultRule, re.Pattern[str], list[int]]] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        for rule in rules:
            self.add(rule)

    def add(self, rule: FaultRule) -> None:
        if rule.service != self.service:
            return
        remaining = [rule.times if rule.times is not None else -1, rule.skip, 0]  # times, skip, fired
        with self._lock:
            self._rules.append((rule, re.compile(rule.path, re.IGNORECASE), remaining))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def pick(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule, pattern, remaining in self._rules:
                if rule.method not in ("*", method) or not pattern.search(path):
                    continue
                if remaining[0] == 0:
                    continue
                if remaining[1] > 0:
                    remaining[1] -= 1
                    continue
                if rule.rate < 1.0 and self._random.random() >= rule.rate:
                    continue
                if remaining[0] > 0:
                    remaining[0] -= 1
                remaining[2] += 1
                return rule
        return None

    def snapshot(self) -> list[dict[str, Any]]:
        """Each rule with how often it fired: a test can tell a request arrived (say, before a delay ends)."""
        with self._lock:
            return [
                {"method": rule.method, "path": rule.path, "fired": remaining[2], "left": remaining[0]}
                for rule, _, remaining in self._rules
            ]


@dataclass(frozen=True)
class Exchange:
    """One request as the server saw it: when it arrived and when it was answered (real monotonic
    seconds, this process's clock), the answer's status (None: the connection was dropped) and its
    Retry-After. Tests judge a client's pacing from these, not from their own wall clock."""

    route: str
    path: str
    received: float
    answered: float
    status: int | None
    retry_after: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "path": self.path,
            "received": self.received,
            "answered": self.answered,
            "status": self.status,
            "retryAfter": self.retry_after,
        }


# The timeline keeps the newest exchanges only: a benchmark's hundreds of thousands of calls must
# not grow the emulator without bound.
TIMELINE_LENGTH = 200_000


class CallStats:
    """Calls and answers per route name, and the timeline of exchanges: what tests and benchmarks
    read back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._statuses: dict[str, Counter[int]] = defaultdict(Counter)
        self._dropped: Counter[str] = Counter()
        self._timeline: deque[Exchange] = deque(maxlen=TIMELINE_LENGTH)

    def record(self, route: str, status: int | None, exchange: Exchange | None = None) -> None:
        with self._lock:
            if status is None:
                self._dropped[route] += 1
            else:
                self._statuses[route][status] += 1
            if exchange is not None:
                self._timeline.append(exchange)

    def timeline(self, route: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e.as_json() for e in self._timeline if route is None or e.route == route]

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            names = set(self._statuses) | set(self._dropped)
            return {
                name: {
                    "calls": sum(self._statuses[name].values()) + self._dropped[name],
                    "statuses": {str(k): v for k, v in sorted(self._statuses[name].items())},
                    "throttled": self._statuses[name][429],
                    "dropped": self._dropped[name],
                }
                for name in sorted(names)
            }

    def reset(self) -> None:
        with self._lock:
            self._statuses.clear()
            self._dropped.clear()
            self._timeline.clear()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, dropped-connection tests) are normal here.
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class EmulatorServer:
    """One emulated service on loopback: routing, faults, counters and the common /_emulator/ routes."""

    def __init__(
        self,
        name: str,
        router: Router,
        render_error: ErrorRenderer,
        clock: EmulatedClock,
        faults: FaultInjector,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.router = router
        self.render_error = render_error
        self.clock = clock
        self.faults = faults
        self.stats = CallStats()
        self._ssl_context = ssl_context
        self._add_inspection_routes()
        self._server = _QuietServer((host, port), self._handler_class())
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{self.name}-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _add_inspection_routes(self) -> None:
        r = self.router
        r.add("GET", r"/_emulator/calls", "inspect", lambda _: json_response(self.stats.snapshot()))
        r.add("GET", r"/_emulator/timeline", "inspect", self._timeline)
        r.add("POST", r"/_emulator/calls/reset", "inspect", self._reset_calls)
        r.add("GET", r"/_emulator/clock", "inspect", self._clock)
        r.add("POST", r"/_emulator/clock/advance", "inspect", self._advance_clock)
        r.add("GET", r"/_emulator/faults", "inspect", lambda _: json_response(self.faults.snapshot()))
        r.add("POST", r"/_emulator/faults", "inspect", self._add_faults)
        r.add("DELETE", r"/_emulator/faults", "inspect", self._clear_faults)

    def _timeline(self, request: Request) -> Response:
        """The exchanges in the order they were answered (`?route=NAME` for one route's)."""
        return json_response(self.stats.timeline(request.query.get("route")))

    def _reset_calls(self, _: Request) -> Response:
        self.stats.reset()
        return json_response({"reset": True})

    def _clock(self, _: Request) -> Response:
        return json_response(
            {
                "now": self.clock.now().isoformat(),
                "elapsed": self.clock.elapsed(),
                "timeScale": self.clock.time_scale,
            }
        )

    def _advance_clock(self, request: Request) -> Response:
        body = request.json()
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if not isinstance(seconds, int | float) or seconds < 0:
            raise ApiError(400, "InvalidRequestBody", 'Expected {"seconds": <non-negative number>}.')
        self.clock.advance(float(seconds))
        return self._clock(request)

    def _add_faults(self, request: Request) -> Response:
        body = request.json()
        items = body if isinstance(body, list) else [body]
        try:
            rules = [FaultRule.model_validate({"service": self.faults.service, **item}) for item in items]
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "InvalidRequestBody", f"Not a fault rule: {exc}") from exc
        for rule in rules:
            self.faults.add(rule)
        return json_response({"added": len(rules)})

    def _clear_faults(self, _: Request) -> Response:
        self.faults.clear()
        return json_response({"cleared": True})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 120
            # Headers and body go out in separate writes; with Nagle's algorithm on, the client's
            # delayed ACK would hold the second one back ~40 ms on every request.
            disable_nagle_algorithm = True
            server_version = f"joedefender-{emulator.name}-emulator"

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("%s: " + format, emulator.name, *args)

            def _serve(self) -> None:
                emulator._serve(self)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        return _Handler

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        received = time.monotonic()
        split = urlsplit(handler.path)
        path = split.path
        method = handler.command
        inspection = path.startswith(INSPECTION_PREFIX)
        try:
            body = _read_body(handler)
        except ValueError as exc:
            self._write(handler, self.render_error(ApiError(400, "BadRequest", str(exc))))
            return
        request = Request(
            method=method,
            path=path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=handler.headers,
            body=body,
        )
        fault: FaultRule | None = None
        try:
            resolved = self.router.resolve(method, path)
            if resolved is None:
                raise ApiError(404, "NotFound", f"No such endpoint: {method} {path}.")
            route, request.params = resolved
            request.route = route.name
            if not inspection:
                fault = self.faults.pick(method, path)
                if fault is not None and not fault.after and self._apply_fault(handler, fault, request, received):
                    return
            response = route.handler(request)
        except ApiError as exc:
            response = self.render_error(exc)
        except Exception:
            logger.exception("%s emulator failed on %s %s", self.name, method, path)
            response = self.render_error(ApiError(500, "InternalServerError", "The emulator failed."))
        # An `after` fault: the handler has made its change, and the answer is lost or replaced.
        if fault is not None and fault.after and self._apply_fault(handler, fault, request, received):
            return
        if not inspection:
            self._record(request, received, response.status, response.headers)
        self._write(handler, response)

    def _record(self, request: Request, received: float, status: int | None, headers: dict[str, str]) -> None:
        route = request.route or "unrouted"
        exchange = Exchange(route, request.path, received, time.monotonic(), status, headers.get("Retry-After"))
        self.stats.record(route, status, exchange)

    def _apply_fault(
        self, handler: BaseHTTPRequestHandler, fault: FaultRule, request: Request, received: float
    ) -> bool:
        """Carry out a fault; True when it replaced the answer."""
        if fault.delay:
            time.sleep(fault.delay)
        if fault.drop:
            self._record(request, received, None, {})
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return True
        if fault.status is None:
            return False
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        code = fault.code if fault.code is not None else _default_code(fault.status)
        message = fault.message or f"Injected fault: {fault.status}."
        response = self.render_error(ApiError(fault.status, code, message, headers))
        self._record(request, received, response.status, response.headers)
        self._write(handler, response)
        return True

    def _write(self, handler: BaseHTTPRequestHandler, response: Response) -> None:
        try:
            handler.send_response(response.status)
            handler.send_header("Content-Type", response.content_type)
            for key, value in response.headers.items():
                handler.send_header(key, value)
            if isinstance(response.body, bytes | bytearray):
                handler.send_header("Content-Length", str(len(response.body)))
                handler.end_headers()
                if handler.command != "HEAD":
                    handler.wfile.write(response.body)
                return
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for chunk in _chunks(response.body):
                handler.wfile.write(f"{len(chunk):X}\r\n".encode() + chunk + b"\r\n")
            handler.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            handler.close_connection = True


class Served:
    """An emulator that is one `EmulatorServer`: its URL, start and stop, a context manager."""

    server: EmulatorServer

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _chunks(body: Iterable[bytes]) -> Iterator[bytes]:
    for chunk in body:
        if chunk:
            yield chunk


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(parts)
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = handler.headers.get("Content-Length")
    if not length:
        return b""
    try:
        return handler.rfile.read(int(length))
    except ValueError as exc:
        raise ValueError(f"Bad Content-Length: {length!r}") from exc


def _default_code(status: int) -> str:
    return {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        429: "TooManyRequests",
        500: "InternalServerError",
        502: "BadGateway",
        503: "ServiceUnavailable",
    }.get(status, "Error")
