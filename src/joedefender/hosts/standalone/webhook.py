"""The webhook the Logic App (or anything else) posts alerts to; it answers at once with 202.

Starlette on uvicorn, rather than FastAPI: the answers (400 with the reason, 411, 413, 415, 503)
and the JoeAz-compatible bodies are decided by `hosts.alert_intake`, which the Azure Functions
trigger shares, so FastAPI's own validation (422 with its own shapes) would stand in the way;
the OpenAPI document is still generated from that module's pydantic request models. uvicorn
brings what the hand-written server lacked: an event loop instead of a thread per connection,
a listen backlog and keep-alive. What uvicorn does not have is in `connections` (a connection
gate under its protocol: caps per client address and in all, deadlines for the first byte, the
TLS handshake and the request head) and here (a deadline for the body: 408).

On loopback the `Host` header must name this machine and a browser's `Origin` must be local too:
with the JSON content type required, a web page can neither post here without a CORS preflight
(which is not answered) nor reach it through a DNS name rebound to 127.0.0.1.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from joedefender import __version__
from joedefender.hosts.alert_intake import (
    MAX_BODY,
    SECRET_HEADER,
    SECRET_PARAMETER,
    AcceptedAnswer,
    AlertIntake,
    ErrorAnswer,
    LogicAppBody,
    TriggerBody,
)
from joedefender.hosts.standalone.connections import ConnectionGate, GateCounts, gated_protocol
from joedefender.hosts.standalone.ui import page_routes
from joedefender.pipeline.facade import Application, Status
from joedefender.settings import is_loopback

logger = logging.getLogger("joedefender.webhook")
ALERT_PATHS = ("/api/alerts", "/api/JoeSandboxDefender", "/")
_INTAKE_THREADS = 8  # as many as the store keeps connections


@dataclass(frozen=True)
class WebhookLimits:
    """Bounds on what one client may hold (see `connections`). Seconds, except where said."""

    first_byte_timeout: float = 2.0  # from accept to the first byte (plain) or a finished TLS handshake
    header_timeout: float = 10.0  # from connecting (or the last answer) to a complete request head
    body_timeout: float = 30.0  # to receive the whole body once the head is in
    keep_alive: int = 5  # an idle keep-alive connection is closed after this
    # Connections held at once, in all and per client address (an IPv6 client: its /64); over
    # either, the longest-waiting connection without a request gives way (see `connections`).
    # Half the pool per client: one address (a proxy, or 300 clients behind one NAT) may burst,
    # but never keeps out another.
    max_connections: int = 1000
    per_client_connections: int = 500
    backlog: int = 2048  # connections the kernel queues before accept


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path
    key_file: Path


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document, its schemas generated from the request and answer models."""
    schemas: dict[str, Any] = {}
    template = "#/components/schemas/{model}"

    def ref(model: type[Any]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template=template)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    shapes = [model.model_json_schema(ref_template=template) for model in (TriggerBody, LogicAppBody)]
    for shape in shapes:
        schemas.update(shape.pop("$defs", {}))
    post = _alert_post(shapes, accepted=ref(AcceptedAnswer), error=ref(ErrorAnswer))
    unauthenticated = {"security": [], "responses": {"200": {"description": "OK"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "joedefender webhook", "version": __version__},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": SECRET_HEADER},
                "codeParameter": {"type": "apiKey", "in": "query", "name": SECRET_PARAMETER},
            },
        },
        "security": [{"functionKey": []}, {"codeParameter": []}],
        "paths": {
            **{path: {"post": post} for path in ALERT_PATHS[:1]},
            "/healthz": {"get": {"summary": "Liveness: the process answers", **unauthenticated}},
            "/readyz": {
                "get": {
                    "summary": "Readiness: the state store answers",
                    "security": [],
                    "responses": {"200": {"description": "Ready"}, "503": {"description": "The store does not answer"}},
                }
            },
            "/openapi.json": {"get": {"summary": "This document", **unauthenticated}},
        },
    }


def _alert_post(shapes: list[dict[str, Any]], *, accepted: dict[str, str], error: dict[str, str]) -> dict[str, Any]:
    """The alert intake operation: the bodies it takes (`shapes`), the answers it gives."""
    failed = {"application/json": {"schema": error}}
    return {
        "summary": "Take in a Defender alert for enrichment; answers at once.",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": shapes}}},
        },
        "responses": {
            "202": {
                "description": "Accepted (also when the alert was known already).",
                "content": {"application/json": {"schema": accepted}},
            },
            "400": {"description": "The body is malformed, or the Host is not this machine.", "content": failed},
            "401": {"description": "The shared secret is missing or wrong.", "content": failed},
            "403": {"description": "A browser page from elsewhere (Origin) on a loopback webhook.", "content": failed},
            "408": {"description": "The body did not arrive in time.", "content": failed},
            "411": {"description": "The body came without a Content-Length (chunked).", "content": failed},
            "413": {"description": f"The body is larger than {MAX_BODY} bytes.", "content": failed},
            "415": {"description": "The body is not sent as application/json.", "content": failed},
            "503": {"description": "The state store is unavailable, or too many connections; deliver again later."},
        },
    }


def _error(status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status)


def build_app(
    alert_intake: AlertIntake,
    *,
    ready: Callable[[], bool] = lambda: True,
    body_timeout: float = WebhookLimits.body_timeout,
    loopback: bool = True,
    status: Status | None = None,
    secret: str | None = None,
) -> ASGIApp:
    """The ASGI application; `loopback` turns on the Host and Origin checks; with `status`, the
    operator's page at /ui (behind `secret` off loopback, see `ui`)."""
    document = openapi()
    # Deliveries are written one at a time anyway (one SQLite writer): a few threads keep it busy,
    # more would only contend, and each would hold a store connection.
    limiter: list[anyio.CapacityLimiter] = []

    async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
        if not limiter:
            limiter.append(anyio.CapacityLimiter(_INTAKE_THREADS))
        return await anyio.to_thread.run_sync(function, *args, limiter=limiter[0])

    async def alerts(request: Request) -> Response:
        query = dict(request.query_params)
        if not alert_intake.authorised(_raw_headers(request), query):
            return _error(401, "missing or wrong shared secret (x-functions-key header or code)")
        body = await _read_body(request, body_timeout)
        if isinstance(body, Response):
            return body
        reply = await in_thread(alert_intake, body, _raw_headers(request), query)
        return JSONResponse(reply.body, status_code=reply.status)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        if await in_thread(ready):
            return JSONResponse({"status": "ready"})
        return _error(503, "the state store does not answer")

    async def openapi_json(_: Request) -> Response:
        return JSONResponse(document)

    app = Starlette(
        routes=[
            *(Route(path, alerts, methods=["POST"]) for path in ALERT_PATHS),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            *(page_routes(status, secret=secret, loopback=loopback) if status is not None else []),
        ],
        exception_handlers={404: _not_found, 405: _wrong_method},
    )
    return _LoopbackGuard(app) if loopback else app


async def _read_body(request: Request, body_timeout: float) -> bytes | Response:
    """The body, bounded in size and time; or the answer that refuses it."""
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        return _error(411, "send the body with a Content-Length, not chunked")
    length = request.headers.get("content-length", "0")
    if not length.isdigit():
        return _error(400, "bad Content-Length")
    if int(length) > MAX_BODY:
        return _error(413, f"the body is larger than {MAX_BODY} bytes")
    body = bytearray()
    try:
        with anyio.fail_after(body_timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY:
                    return _error(413, f"the body is larger than {MAX_BODY} bytes")
    except TimeoutError:
        return _error(408, f"the body did not arrive within {body_timeout:g} s")
    except ClientDisconnect:
        logger.debug("webhook: %s hung up before sending the whole body", _peer(request))
        return Response(status_code=400)
    return bytes(body)


async def _not_found(request: Request, _: Exception) -> Response:
    hint = "; POST alerts to /api/alerts" if request.method == "POST" else ""
    return _error(404, f"no such endpoint: {request.url.path}{hint}")


async def _wrong_method(request: Request, _: Exception) -> Response:
    return _error(405, f"{request.method} is not served on {request.url.path}")


def _raw_headers(request: Request) -> dict[str, str | bytes]:
    """The headers as sent (bytes): the secret is compared as UTF-8 bytes, not Latin-1 text."""
    return {name.decode("latin-1"): value for name, value in request.scope["headers"]}


def _peer(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client is not None else "a client"


class _LoopbackGuard:
    """On loopback, refuse a Host that is not this machine and a browser Origin from elsewhere."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {name: value.decode("latin-1") for name, value in scope["headers"]}
            host = headers.get(b"host", "")
            origin = headers.get(b"origin")
            refusal: Response | None = None
            if not is_loopback(_host_only(host)):
                refusal = _error(400, "the Host header does not name this machine (127.0.0.1 or localhost)")
            elif (
                origin is not None and origin != "null" and not is_loopback(urlsplit(origin).hostname or "")
            ) or origin == "null":
                refusal = _error(403, "requests from a web page elsewhere are not accepted")
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self._app(scope, receive, send)


def _host_only(host: str) -> str:
    """The name in a Host header: without the port, and without the brackets of an IPv6 literal."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _server_tls(files: TlsFiles) -> ssl.SSLContext:
    """The server side of TLS: the platform's defaults (TLS 1.2 or later) and our certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(files.cert_file), str(files.key_file))
    return context


class Webhook:
    """The server: binds at construction (so `url` is known at once), serves in a thread."""

    def __init__(
        self,
        connector: Application,
        *,
        secret: str | None,
        host: str,
        port: int,
        on_new: Callable[[], None] = lambda: None,
        tls: TlsFiles | None = None,
        limits: WebhookLimits = WebhookLimits(),
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self._tls = tls
        app = build_app(
            AlertIntake(connector, secret=secret, on_new=on_new),
            ready=ready,
            body_timeout=limits.body_timeout,
            loopback=is_loopback(host),
            status=connector.status,
            secret=secret,
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host, port), family=family, backlog=limits.backlog)
        self._gate = ConnectionGate(per_client=limits.per_client_connections, total=limits.max_connections)
        protocol = gated_protocol(
            self._gate,
            first_byte_timeout=limits.first_byte_timeout,
            head_timeout=limits.header_timeout,
            tls=_server_tls(tls) if tls else None,  # the gate does the handshake, after its count
        )
        config = uvicorn.Config(
            app,
            http=protocol,
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            # A backstop on requests under way: the gate already holds connections to the cap.
            limit_concurrency=limits.max_connections + 1,
            backlog=limits.backlog,
            timeout_keep_alive=limits.keep_alive,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def connections(self) -> GateCounts:
        """The connection gate's accounting: open per client, admitted, shed, refused."""
        return self._gate.counts()

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self._tls else 'http'}://{shown}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="webhook", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()
