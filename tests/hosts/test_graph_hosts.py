"""With `AlertSource=graph` and verdicts on incidents, alerts named by their Graph id reach the
connector through the hosts as through the poller: `joedefender process ID` (its own process) and
the running service's webhook. Each alert is read through Graph's alerts_v2 (never the MDE API's
alerts), commented once through Graph, and its incident tagged and commented once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from joedefender.domain.comments import MARKER_PREFIX
from joedefender.hosts.standalone.service import Service, ServiceOptions
from tests.hosts import run_joedefender
from tests.pipeline.builders import alert, file_evidence, machine, machine_id, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]

_PATH = "C:\\Users\\eve\\Downloads\\dropper.exe"
_URL = "http://phish.example/login"
# Graph alert ids as Graph's documented examples write them (an MDE alert's id; the number after
# the underscore may be negative).
_FILE_ALERT = "da637551227677560813_-961444813"
_URL_ALERT = "da637578995287051192_756343937"
_INCIDENT = "2972395"
_SECRET = "webhook-shared-secret"
_GRAPH = {"AlertSource": "graph", "DefenderIncidentTags": "true", "DefenderIncidentComments": "true"}


def _world(make_world: WorldFactory, **settings: str) -> World:
    alerts: list[dict[str, Any]] = [
        alert(1, 1, file_evidence("dropper", _PATH)) | {"id": _FILE_ALERT, "incidentId": int(_INCIDENT)},
        alert(2, 1, {"entityType": "Url", "url": _URL}) | {"id": _URL_ALERT, "incidentId": int(_INCIDENT)},
    ]
    raw = world(
        samples={"dropper": "dropper bytes"},
        machines=[machine(1, files={_PATH: "dropper"})],
        alerts=alerts,
        verdicts=[
            {"sample": "dropper", "detection": "suspicious", "score": 60},
            {"url": _URL, "detection": "malicious", "score": 80},
        ],
    )
    raw["graph"] = {"incidents": [{"id": _INCIDENT, "customTags": ["Finance"]}]}
    return make_world(scenario(raw), **_GRAPH, **settings)


def _ours(comments: list[str]) -> list[str]:
    return [c for c in comments if MARKER_PREFIX in c]


def _check(w: World) -> None:
    for alert_id, headline in ((_FILE_ALERT, "SUSPICIOUS (score 60/100)"), (_URL_ALERT, "MALICIOUS (score 80/100)")):
        ours = _ours([c.comment or "" for c in w.graph_alert(alert_id).comments])
        assert len(ours) == 1, (alert_id, ours)
        assert ours[0].startswith(f"Joe Sandbox: {headline}")
    incident = w.graph_incident(_INCIDENT)
    assert incident.custom_tags == ["Finance", "JoeSandbox:malicious"]
    assert len(_ours([c.comment or "" for c in incident.comments])) == 2
    graph_calls = w.graph("/_emulator/calls")
    assert graph_calls["alerts_v2.get"]["calls"] >= 1  # read by its id through Graph
    assert not {route for route in w.defender("/_emulator/calls") if route.startswith("alerts.")}


def test_process_takes_graph_alert_ids(make_world: WorldFactory) -> None:
    w = _world(make_world)
    scale = str(w.scenario.time_scale)
    done = run_joedefender("process", _FILE_ALERT, _URL_ALERT, "--time-scale", scale, settings=w.values)
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("│")}
    assert {_FILE_ALERT, _URL_ALERT} <= set(rows), done.stdout
    assert all("commented" in rows[alert_id] for alert_id in (_FILE_ALERT, _URL_ALERT))
    _check(w)
    # `status ALERT` shows what was written on its incident too.
    detail = run_joedefender("status", _FILE_ALERT, settings=w.values)
    assert detail.returncode == 0, detail.stderr
    assert f"Incident {_INCIDENT}" in detail.stdout
    lines = [[cell.strip() for cell in line.split("│")[2:5]] for line in detail.stdout.splitlines()]
    assert ["incident tag", "tagged", "JoeSandbox:malicious"] in lines, detail.stdout
    assert sum(cells[:2] == ["incident comment", "commented"] for cells in lines) == 2, detail.stdout


def test_the_webhook_takes_graph_alert_ids(make_world: WorldFactory) -> None:
    w = _world(make_world, WebhookPort="0", WebhookSecret=_SECRET)
    with w.connector() as connector:
        service = Service(connector, ServiceOptions(poll=False, webhook=True))
        assert service.webhook is not None
        url = f"{service.webhook.url}/api/alerts"
        runner = threading.Thread(target=service.run, name="service")
        runner.start()
        try:
            for body in ({"id": _FILE_ALERT, "machineId": machine_id(1)}, {"id": _URL_ALERT}):
                response = httpx.post(url, headers={"x-functions-key": _SECRET}, json=body, timeout=10)
                assert response.status_code == 202, response.text
            deadline = time.monotonic() + 30
            while len(_ours([c.comment or "" for c in w.graph_incident(_INCIDENT).comments])) < 2:
                assert time.monotonic() < deadline, "the incident did not get its comments within 30 s"
                time.sleep(0.1)  # polling the emulator for the outcome, with a deadline
            while connector.app.pending():
                assert time.monotonic() < deadline, "the work did not end within 30 s"
                time.sleep(0.1)
        finally:
            service.request_stop()
            runner.join(timeout=30)
        assert not runner.is_alive()
    _check(w)
