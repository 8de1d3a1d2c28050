"""The webhook the Logic App (or anything else) posts alerts to; it answers at once with 202.

Bodies accepted: JoeAz's `{"alert": {...}, "threat_name", "detection_source", "threat_family"}`
and the WDATP trigger's bare `{"id", "machineId"}`. The shared secret travels as Azure Functions
keys do (`x-functions-key` header or `code` query parameter), so a JoeAz Logic App needs only its
URL changed.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from joedefender import __version__
from joedefender.domain.keys import triage_key
from joedefender.pipeline.intake import Accepted, Intake, InvalidAlertError
from joedefender.pipeline.ports import StoreError

logger = logging.getLogger("joedefender.webhook")
_MAX_BODY = 1024 * 1024
ALERT_PATHS = ("/api/alerts", "/api/JoeSandboxDefender", "/")
_OK = {"200": {"description": "OK"}}


class BadBodyError(ValueError):
    """The body is not one of the accepted shapes; the message says what is wrong."""


def parse_body(raw: bytes) -> tuple[str, str | None]:
    """(alert id, machine id) from a webhook body."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # also too deep, or an integer too long to read
        raise BadBodyError(f"the body is not valid JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise BadBodyError("the body must be a JSON object")
    source: Any = body.get("alert", body)
    if not isinstance(source, dict):
        raise BadBodyError('"alert" must be an object holding the Defender alert')
    if "id" not in source:
        raise BadBodyError('no alert id: expected {"id": ..., "machineId": ...} or {"alert": {"id": ...}}')
    return source["id"], source.get("machineId")


def openapi() -> dict[str, Any]:
    alert_body = {
        "oneOf": [
            {
                "type": "object",
                "title": "WDATP trigger",
                "required": ["id"],
                "properties": {"id": {"type": "string"}, "machineId": {"type": "string"}},
            },
            {
                "type": "object",
                "title": "JoeAz Logic App",
                "required": ["alert"],
                "properties": {
                    "alert": {"type": "object", "required": ["id"]},
                    "threat_name": {"type": "string"},
                    "detection_source": {"type": "string"},
                    "threat_family": {"type": "string"},
                },
            },
        ]
    }
    error = {"type": "object", "properties": {"error": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "joedefender webhook", "version": __version__},
        "components": {
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "codeParameter": {"type": "apiKey", "in": "query", "name": "code"},
            }
        },
        "security": [{"functionKey": []}, {"codeParameter": []}],
        "paths": {
            "/api/alerts": {
                "post": {
                    "summary": "Take in a Defender alert for enrichment; answers at once.",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": alert_body}}},
                    "responses": {
                        "202": {
                            "description": "Accepted (also when the alert was known already).",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "alertId": {"type": "string"},
                                            "job": {"type": "string"},
                                            "status": {"enum": ["accepted", "already known"]},
                                        },
                                    }
                                }
                            },
                        },
                        "400": {
                            "description": "The body is malformed.",
                            "content": {"application/json": {"schema": error}},
                        },
                        "401": {"description": "The shared secret is missing or wrong."},
                        "411": {"description": "The body came without a Content-Length (chunked)."},
                        "413": {"description": "The body is larger than 1 MiB."},
                        "503": {"description": "The state store is unavailable; deliver again later."},
                    },
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "OK"}}}},
            "/openapi.json": {
                "get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OK"}}}
            },
        },
    }


class Webhook:
    def __init__(
        self,
        intake: Intake,
        *,
        secret: str | None,
        host: str,
        port: int,
        on_new: Callable[[], None] = lambda: None,
    ) -> None:
        self._intake = intake
        self._secret = secret
        self._on_new = on_new
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="webhook", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _authorised(self, headers: Any, query: dict[str, list[str]]) -> bool:
        if self._secret is None:
            return True
        offered = headers.get("x-functions-key") or (query.get("code") or [""])[0]
        return hmac.compare_digest(offered.encode(), self._secret.encode())

    def _accept(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        try:
            alert_id, machine_id = parse_body(raw)
            accepted: Accepted = self._intake.receive(alert_id, machine_id=machine_id, source="webhook")
        except (BadBodyError, InvalidAlertError) as exc:
            return 400, {"error": str(exc)}
        except StoreError:  # without an answer the sender retries anyway; say so plainly
            logger.exception("webhook: could not record the alert")
            return 503, {"error": "the connector could not record the alert; deliver it again later"}
        if accepted.created:
            self._on_new()
        status = "accepted" if accepted.created else "already known"
        return 202, {"alertId": accepted.alert_id, "job": triage_key(accepted.alert_id), "status": status}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        webhook = self

        class _Handler(BaseHTTPRequestHandler):
            server_version = f"joedefender/{__version__}"

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug(format, *args)

            def _reply(self, status: int, body: dict[str, Any] | None = None) -> None:
                payload = json.dumps(body if body is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/healthz":
                    self._reply(200, {"status": "ok"})
                elif path == "/openapi.json":
                    self._reply(200, openapi())
                else:
                    self._reply(404, {"error": f"no such endpoint: {path}"})

            def do_POST(self) -> None:
                split = urlsplit(self.path)
                if split.path not in ALERT_PATHS:
                    self._reply(404, {"error": f"no such endpoint: {split.path}; POST alerts to /api/alerts"})
                    return
                if not webhook._authorised(self.headers, parse_qs(split.query)):
                    self._reply(401, {"error": "missing or wrong shared secret (x-functions-key header or code)"})
                    return
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    self.close_connection = True
                    self._reply(411, {"error": "send the body with a Content-Length, not chunked"})
                    return
                try:
                    length = int(self.headers.get("Content-Length") or "0")
                except ValueError:
                    length = -1
                if length < 0:
                    self._reply(400, {"error": "bad Content-Length"})
                    return
                if length > _MAX_BODY:
                    self.close_connection = True
                    self._reply(413, {"error": f"the body is larger than {_MAX_BODY} bytes"})
                    return
                if length == 0:
                    self._reply(400, {"error": "the body is empty; expected a JSON alert reference"})
                    return
                status, body = webhook._accept(self.rfile.read(length))
                self._reply(status, body)

        return _Handler
