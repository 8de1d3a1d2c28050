"""One alert delivery, from body bytes and headers to (status, JSON answer), for every HTTP host.

The standalone webhook (Starlette) and the Azure Functions HTTP trigger both hand the raw body,
the headers and the query here, so both accept the same bodies, authenticate the same way and
answer the same statuses and reasons. Nothing here knows an HTTP framework.

Bodies accepted: JoeAz's `{"alert": {...}, "threat_name", "detection_source", "threat_family"}`
and the WDATP trigger's bare `{"id", "machineId"}`. The shared secret travels as Azure Functions
keys do (`x-functions-key` header or `code` query parameter), so a JoeAz Logic App needs only its
URL changed.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from joedefender.domain.keys import triage_key
from joedefender.pipeline.facade import (
    Application,
    InvalidAlertError,
    StoreError,
    validate_alert_id,
    validate_machine_id,
)

logger = logging.getLogger("joedefender.webhook")

MAX_BODY = 1024 * 1024  # bytes; a Defender alert reference is a few hundred
SECRET_HEADER = "x-functions-key"  # noqa: S105 - the name, not the secret
SECRET_PARAMETER = "code"  # noqa: S105


# -- the request and answer models: the OpenAPI document is generated from these ---------------


class TriggerBody(BaseModel):
    """What the WDATP Logic App trigger posts."""

    model_config = ConfigDict(title="WDATP trigger", extra="allow")
    id: str = Field(description="The Defender alert id")
    machineId: str | None = Field(default=None, description="The device's 40-hex-digit id")


class AlertReference(BaseModel):
    model_config = ConfigDict(title="Defender alert", extra="allow")
    id: str
    machineId: str | None = None


class LogicAppBody(BaseModel):
    """What JoeAz's Logic App posts: the whole alert, and three fields taken out of it."""

    model_config = ConfigDict(title="JoeAz Logic App", extra="allow")
    alert: AlertReference
    threat_name: str | None = None
    detection_source: str | None = None
    threat_family: str | None = None


class AcceptedAnswer(BaseModel):
    model_config = ConfigDict(title="Accepted")
    alertId: str
    job: str
    status: str = Field(description='"accepted", or "already known" for a repeated delivery')


class ErrorAnswer(BaseModel):
    model_config = ConfigDict(title="Error")
    error: str


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


class BadBodyError(ValueError):
    """The body is not one of the accepted shapes; the message says what is wrong."""


def parse_body(raw: bytes) -> tuple[str, str | None]:
    """(alert id, machine id) from a webhook body, each validated."""
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
    return validate_alert_id(source["id"]), validate_machine_id(source.get("machineId"))


def secret_matches(offered: str | bytes | None, secret: str) -> bool:
    """Timing-safe, on UTF-8 bytes on both sides: HTTP headers arrive as bytes, and a secret with
    non-ASCII characters must match whatever decoding the framework applied."""
    if offered is None:
        return False
    given = offered if isinstance(offered, bytes) else offered.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, secret.encode("utf-8"))


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class AlertIntake:
    """Authenticate, check and parse one delivery, and record it through intake."""

    def __init__(self, app: Application, *, secret: str | None, on_new: Callable[[], None] = lambda: None) -> None:
        self._app = app
        self._secret = secret
        self._on_new = on_new

    def __repr__(self) -> str:
        return f"AlertIntake(secret={'set' if self._secret else 'none'})"

    def authorised(self, headers: Mapping[str, str | bytes], query: Mapping[str, str]) -> bool:
        if self._secret is None:
            return True
        header = _header(headers, SECRET_HEADER)
        offered = header if header is not None else query.get(SECRET_PARAMETER)
        return secret_matches(offered, self._secret)

    def __call__(self, body: bytes, headers: Mapping[str, str | bytes], query: Mapping[str, str]) -> Reply:
        if not self.authorised(headers, query):
            return Reply(401, {"error": "missing or wrong shared secret (x-functions-key header or code)"})
        content_type = _header(headers, "content-type")
        if not is_json(content_type.decode("latin-1") if isinstance(content_type, bytes) else content_type):
            return Reply(415, {"error": "send the body as Content-Type: application/json"})
        if len(body) > MAX_BODY:
            return Reply(413, {"error": f"the body is larger than {MAX_BODY} bytes"})
        if not body:
            return Reply(400, {"error": "the body is empty; expected a JSON alert reference"})
        try:
            alert_id, machine_id = parse_body(body)
            accepted = self._app.receive(alert_id, machine_id=machine_id, source="webhook")
        except (BadBodyError, InvalidAlertError) as exc:
            return Reply(400, {"error": str(exc)})
        except StoreError as exc:  # without an answer the sender retries anyway; say so plainly
            logger.error("webhook: could not record the alert: %s", exc)
            return Reply(503, {"error": "the connector could not record the alert; deliver it again later"})
        if accepted.created:
            self._on_new()
        status = "accepted" if accepted.created else "already known"
        return Reply(202, {"alertId": accepted.alert_id, "job": triage_key(accepted.alert_id), "status": status})


def _header(headers: Mapping[str, str | bytes], name: str) -> str | bytes | None:
    """Case-insensitive, whatever the host's mapping does with case."""
    found = headers.get(name)
    if found is not None:
        return found
    return next((value for key, value in headers.items() if key.lower() == name), None)
