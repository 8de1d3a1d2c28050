"""The HTTP triggers: alert intake (JoeAz's Logic App body or the bare WDATP trigger body,
answered 202 at once) and an alert's status as `joedefender status ALERT_ID` prints it.

Both use function-level authorisation: the Functions host checks the key (the `x-functions-key`
header or `code` parameter, as JoeAz's Logic App sends it) before the code runs, so the shared
intake is built without a secret of its own. Each function has keys of its own: the Logic App is
given the intake function's (deploy/logicapp.json), which cannot open `status`."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from rich.console import Console

import azure.functions as func
from joedefender.domain.text import shown
from joedefender.hosts.alert_intake import AlertIntake
from joedefender.hosts.azure import telemetry
from joedefender.hosts.azure.runtime import Runtime
from joedefender.hosts.standalone.status import print_status
from joedefender.pipeline.facade import InvalidAlertError, StoreError, validate_alert_id
from joedefender.settings import ConfigurationError

logger = logging.getLogger("joedefender.functions")
_STATUS_WIDTH = 200  # characters; the tables fold longer cells
_POISON_SHOWN = 100
# The tables bound their rows and cells (hosts/standalone/status.py); this bounds the whole answer.
MAX_STATUS_CHARS = 1_000_000


def _json(status: int, body: dict[str, Any]) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def _unavailable(exc: Exception) -> func.HttpResponse:
    """The settings or the store failed: logged in full here, said briefly to the caller."""
    logger.error("the connector cannot serve this request: %s", exc)
    return _json(503, {"error": "the connector is not available (see its log); deliver again later"})


def receive_alert(runtime: Runtime, req: func.HttpRequest) -> func.HttpResponse:
    try:
        app = runtime.hosted().connector.app
    except (ConfigurationError, StoreError) as exc:
        return _unavailable(exc)
    reply = AlertIntake(app, secret=None)(req.get_body(), dict(req.headers), dict(req.params))
    with telemetry.bound(alert_id=reply.body.get("alertId")):
        logger.info("alert delivery answered %d", reply.status)
    return _json(reply.status, reply.body)


def alert_status(runtime: Runtime, req: func.HttpRequest) -> func.HttpResponse:
    """Text/plain: the same tables the CLI prints; without an alert id, the overview and the
    poison queues' messages."""
    raw = req.route_params.get("alert_id") or None
    try:
        alert_id = None if raw is None else validate_alert_id(raw)
    except InvalidAlertError as exc:
        return _json(400, {"error": str(exc)})
    try:
        hosted = runtime.hosted()
        buffer = io.StringIO()
        console = Console(file=buffer, width=_STATUS_WIDTH, color_system=None, force_terminal=False, no_color=True)
        if not print_status(hosted.connector.app.status, console, alert_id):
            return _json(404, {"error": f"no alert {alert_id} is known to the connector"})
        if alert_id is None:
            _print_poisoned(console, hosted.store.poisoned())
    except (ConfigurationError, StoreError) as exc:
        return _unavailable(exc)
    text = buffer.getvalue()
    if len(text) > MAX_STATUS_CHARS:
        text = text[:MAX_STATUS_CHARS] + f"\n… cut at {MAX_STATUS_CHARS:,} characters\n"
    return func.HttpResponse(text, status_code=200, mimetype="text/plain", charset="utf-8")


def _print_poisoned(console: Console, poisoned: list[tuple[str, str]]) -> None:
    """Messages the host gave up on after maxDequeueCount failures: the sweeper queues their work
    again if it is still unfinished; listed so an operator sees that the store kept failing."""
    if not poisoned:
        return
    console.print(f"poison queue messages: {len(poisoned)}", markup=False)
    for queue, body in poisoned[:_POISON_SHOWN]:
        console.print(f"  {queue}: {shown(body, 200)}", markup=False, highlight=False)
