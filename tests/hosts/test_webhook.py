"""The webhook: what a Logic App (or anything else) posting alerts gets back, and what it leaves in the store.

A good delivery answers 202 at once and records one alert with one queued triage; anything else
answers with the reason and leaves the store as it was.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from joedefender.bootstrap import Connector, open_connector
from joedefender.domain.comments import MARKER_PREFIX
from joedefender.hosts.standalone.service import Service, ServiceOptions
from joedefender.hosts.standalone.webhook import Webhook
from joedefender.pipeline.clock import Clock
from joedefender.pipeline.ports import StoreUnavailable, UnitOfWork
from joedefender.settings import Settings
from tests.pipeline.builders import alert, file_evidence, machine, machine_id, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]

_SECRET = "webhook-shared-secret"
_PATH = "C:\\Users\\eve\\Downloads\\dropper.exe"
_ALERT = alert(1, 1, file_evidence("dropper", _PATH), threat="Trojan:Win32/Dropper.B")
_ALERT_ID = str(_ALERT["id"])
_MACHINE_ID = machine_id(1)
_MiB = 1024 * 1024


def _raw_scenario() -> dict[str, Any]:
    return world(
        samples={"dropper": "dropper bytes"},
        machines=[machine(1, files={_PATH: "dropper"})],
        alerts=[_ALERT],
        verdicts=[{"sample": "dropper", "detection": "malicious", "score": 87, "threatname": "Dropper"}],
    )


def _logic_app_body(alert_json: dict[str, Any]) -> dict[str, Any]:
    """What JoeAz's Logic App posts: the whole alert, and three fields taken out of it."""
    return {
        "alert": alert_json,
        "threat_name": alert_json.get("threatName"),
        "detection_source": alert_json.get("detectionSource"),
        "threat_family": alert_json.get("threatFamilyName"),
    }


@dataclass
class _Hook:
    world: World
    connector: Connector
    url: str
    client: httpx.Client  # on `url`, with the shared secret

    def post(self, body: bytes | dict[str, Any], path: str = "/api/alerts") -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post(path, content=content, headers={"Content-Type": "application/json"})

    def alerts(self) -> list[str]:
        return [a.record.alert_id for a in self.connector.ctx.alerts.list()]

    def queued(self) -> list[str]:
        return [item.key for item in self.connector.store.items()]


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One pair of emulators for the module (stopping them takes a second); each test has its own store."""
    folder = tmp_path_factory.mktemp("webhook-world")
    w = World(scenario(_raw_scenario()), folder)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def hook(shared_world: World, tmp_path: Path) -> Iterator[_Hook]:
    settings = Settings.from_mapping(shared_world.values | {"StatePath": str(tmp_path / "state.db")})
    with open_connector(settings, clock=Clock(scale=shared_world.scenario.time_scale)) as connector:
        webhook = Webhook(connector.app, secret=_SECRET, host="127.0.0.1", port=0)
        webhook.start()
        try:
            headers = {"x-functions-key": _SECRET}
            with httpx.Client(base_url=webhook.url, headers=headers, timeout=10) as client:
                yield _Hook(shared_world, connector, webhook.url, client)
        finally:
            webhook.stop()


# -- accepted ---------------------------------------------------------------------------------


def test_the_logic_app_body_is_accepted_with_the_alert_id_and_its_job(hook: _Hook) -> None:
    full_alert = next(a for a in hook.world.defender("/_emulator/alerts") if a["id"] == _ALERT_ID)
    response = hook.post(_logic_app_body(full_alert))
    assert response.status_code == 202, response.text
    assert response.json() == {"alertId": _ALERT_ID, "job": f"triage:{_ALERT_ID}", "status": "accepted"}
    stored = hook.connector.ctx.alerts.get(_ALERT_ID)
    assert stored is not None
    assert (stored.record.source, stored.record.machine_id) == ("webhook", _MACHINE_ID)
    assert hook.queued() == [f"triage:{_ALERT_ID}"]


@pytest.mark.parametrize("path", ["/api/alerts", "/api/JoeSandboxDefender"])
def test_the_bare_trigger_body_is_accepted_with_the_secret_as_code(hook: _Hook, path: str) -> None:
    bare = {"id": _ALERT_ID, "machineId": _MACHINE_ID.upper()}
    response = httpx.post(f"{hook.url}{path}", params={"code": _SECRET}, json=bare, timeout=10)
    assert response.status_code == 202, response.text
    assert response.json()["alertId"] == _ALERT_ID
    assert response.json()["job"] == f"triage:{_ALERT_ID}"
    stored = hook.connector.ctx.alerts.get(_ALERT_ID)
    assert stored is not None
    assert stored.record.machine_id == _MACHINE_ID


def test_a_repeated_delivery_is_already_known_and_changes_nothing(hook: _Hook) -> None:
    first = hook.post({"id": _ALERT_ID, "machineId": _MACHINE_ID})
    again = hook.post(_logic_app_body({"id": _ALERT_ID, "machineId": _MACHINE_ID, "title": "the same"}))
    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert (again.status_code, again.json()["status"]) == (202, "already known")
    assert again.json()["job"] == first.json()["job"]
    assert hook.alerts() == [_ALERT_ID]
    assert hook.queued() == [f"triage:{_ALERT_ID}"]


def test_an_alert_is_recorded_with_its_triage_or_not_at_all(hook: _Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    """Intake writes the alert, its history and its triage item in one unit of work: a store that
    fails in the commit leaves none of them, and the sender's retry records all of them."""
    store = hook.connector.store
    real = store.unit_of_work

    def failing_once() -> UnitOfWork:
        uow = real()

        def commit() -> Any:
            monkeypatch.setattr(store, "unit_of_work", real)
            raise StoreUnavailable("database is locked")

        uow.commit = commit  # type: ignore[method-assign]
        return uow

    monkeypatch.setattr(store, "unit_of_work", failing_once)
    assert hook.post({"id": _ALERT_ID}).status_code == 503
    assert (hook.alerts(), hook.queued(), store.history(f"alert:{_ALERT_ID}")) == ([], [], [])

    again = hook.post({"id": _ALERT_ID})
    assert (again.status_code, again.json()["status"]) == (202, "accepted")
    assert hook.alerts() == [_ALERT_ID]
    assert hook.queued() == [f"triage:{_ALERT_ID}"]

    # Once triaged, a redelivery queues nothing.
    triage = store.claim("worker", hook.connector.ctx.now(), 60)
    assert triage is not None
    store.complete(triage)
    assert hook.post({"id": _ALERT_ID}).json()["status"] == "already known"
    assert hook.queued() == []


def test_a_body_of_exactly_one_mebibyte_is_taken(hook: _Hook) -> None:
    body = json.dumps({"id": _ALERT_ID}).encode()
    response = hook.post(body + b" " * (_MiB - len(body)))
    assert response.status_code == 202, response.text


# -- refused, and nothing recorded ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"this is not json", "not valid JSON"),
        (b'{"id": "da1_1"', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'{"id": ' + b"7" * 5000 + b"}", "not valid JSON"),
        (b'[{"id": "da1_1"}]', "must be a JSON object"),
        (b'"da1_1"', "must be a JSON object"),
        (b"{}", "no alert id"),
        (b'{"alert": {"title": "no id"}}', "no alert id"),
        (b'{"alert": "x"}', '"alert" must be an object'),
        (b'{"alert": ["da1_1"]}', '"alert" must be an object'),
        (b'{"id": null}', "missing or not a string"),
        (b'{"id": 42}', "missing or not a string"),
        (b'{"id": "   "}', "missing or not a string"),
        (b'{"id": "da1 1"}', "may hold only letters, digits"),
        (b'{"id": "da1\\"; DROP TABLE alerts; --"}', "may hold only letters, digits"),
        (b'{"id": "da1\'1"}', "may hold only letters, digits"),
        (b'{"id": "../../etc/passwd"}', "may hold only letters, digits"),
        (json.dumps({"id": "a" * 129}).encode(), "at most 128"),
        (json.dumps({"id": "da1_1", "machineId": "z" * 40}).encode(), "machineId must be 40 hexadecimal"),
        (json.dumps({"id": "da1_1", "machineId": "ab" * 19}).encode(), "machineId must be 40 hexadecimal"),
        (json.dumps({"alert": {"id": "da1_1", "machineId": 7}}).encode(), "machineId must be 40 hexadecimal"),
        (b"", "empty"),
    ],
)
def test_a_bad_body_gets_400_with_the_reason_and_no_job(hook: _Hook, body: bytes, reason: str) -> None:
    response = hook.post(body)
    assert response.status_code == 400, response.text
    assert reason in response.json()["error"]
    assert hook.alerts() == []
    assert hook.queued() == []


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        ({"x-functions-key": "wrong"}, {}),
        ({"x-functions-key": ""}, {}),
        ({}, {"code": "wrong"}),
        ({}, {"code": _SECRET[:-1]}),
        ({"x-functions-key": _SECRET.upper()}, {}),
    ],
)
def test_a_missing_or_wrong_secret_gets_401_and_no_job(
    hook: _Hook, headers: dict[str, str], params: dict[str, str]
) -> None:
    url = f"{hook.url}/api/alerts"
    response = httpx.post(url, headers=headers, params=params, json={"id": _ALERT_ID}, timeout=10)
    assert response.status_code == 401
    assert "shared secret" in response.json()["error"]
    assert _SECRET not in response.text
    assert hook.alerts() == []


def test_an_unknown_path_gets_404(hook: _Hook) -> None:
    posted = hook.post({"id": _ALERT_ID}, path="/api/alert")
    assert posted.status_code == 404
    assert "/api/alerts" in posted.json()["error"]
    assert hook.client.get("/nothing/here").status_code == 404
    assert hook.alerts() == []


def test_a_body_over_one_mebibyte_gets_413_and_no_job(hook: _Hook) -> None:
    body = json.dumps({"id": _ALERT_ID}).encode()
    response = hook.post(body + b" " * (_MiB + 1 - len(body)))
    assert response.status_code == 413
    assert hook.alerts() == []


def test_a_chunked_body_gets_411_and_no_job(hook: _Hook) -> None:
    def chunks() -> Iterator[bytes]:
        yield json.dumps({"id": _ALERT_ID}).encode()

    response = hook.client.post("/api/alerts", content=chunks())
    assert response.status_code == 411
    assert "Content-Length" in response.json()["error"]
    assert hook.alerts() == []


@pytest.mark.parametrize("length", ["-5", "lots"])
def test_a_bad_content_length_gets_400(hook: _Hook, length: str) -> None:
    host, _, port = hook.url.removeprefix("http://").partition(":")
    request = (
        f"POST /api/alerts HTTP/1.1\r\nHost: {host}\r\nx-functions-key: {_SECRET}\r\nContent-Length: {length}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(request.encode())
        received = b""
        while chunk := raw.recv(4096):  # the server closes after refusing a malformed request
            received += chunk
    answer = received.decode()
    assert answer.startswith("HTTP/1.1 400"), answer  # uvicorn's parser refuses it before the app
    assert "Connection: close" in answer
    assert hook.alerts() == []


def test_a_store_that_fails_gets_503_so_the_sender_delivers_again(hook: _Hook) -> None:
    hook.connector.store.close()
    response = hook.post({"id": _ALERT_ID})
    assert response.status_code == 503
    assert "deliver it again" in response.json()["error"]


# -- description and health -------------------------------------------------------------------


def test_openapi_describes_the_webhook(hook: _Hook) -> None:
    response = hook.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"]
    assert document["info"]["version"]
    post = document["paths"]["/api/alerts"]["post"]
    assert {"202", "400", "401", "413"} <= set(post["responses"])
    for operations in document["paths"].values():
        for operation in operations.values():
            assert all("description" in answer for answer in operation["responses"].values())
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    shapes = {tuple(option["required"]) for option in schema["oneOf"]}
    assert shapes == {("id",), ("alert",)}
    schemes = document["components"]["securitySchemes"]
    assert {(s["in"], s["name"]) for s in schemes.values()} == {("header", "x-functions-key"), ("query", "code")}
    for requirement in document["security"]:
        assert set(requirement) <= set(schemes)
    assert {"/healthz", "/readyz"} <= set(document["paths"])
    assert {"AlertReference", "AcceptedAnswer", "ErrorAnswer"} <= set(document["components"]["schemas"])
    assert hook.client.get("/openapi.json", headers={"x-functions-key": ""}).status_code == 200  # no secret needed


def test_healthz_answers_without_the_secret(hook: _Hook) -> None:
    response = httpx.get(f"{hook.url}/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# -- end to end ---------------------------------------------------------------------------------


def test_an_alert_delivered_to_the_running_service_ends_enriched(make_world: WorldFactory) -> None:
    w = make_world(scenario(_raw_scenario()), WebhookPort="0", WebhookSecret=_SECRET)
    with w.connector() as connector:
        service = Service(connector, ServiceOptions(poll=False, webhook=True))
        assert service.webhook is not None
        port = int(service.webhook.url.rsplit(":", 1)[1])
        runner = threading.Thread(target=service.run, name="service")
        runner.start()
        try:
            full_alert = next(a for a in w.defender("/_emulator/alerts") if a["id"] == _ALERT_ID)
            response = httpx.post(
                f"http://127.0.0.1:{port}/api/alerts",
                headers={"x-functions-key": _SECRET},
                json=_logic_app_body(full_alert),
                timeout=10,
            )
            assert response.status_code == 202, response.text
            deadline = time.monotonic() + 30
            while not [c for c in w.comments(_ALERT_ID) if MARKER_PREFIX in c]:
                assert time.monotonic() < deadline, "the alert was not enriched within 30 s"
                time.sleep(0.1)  # polling the emulator for the outcome, with a deadline
        finally:
            service.request_stop()
            runner.join(timeout=30)
        assert not runner.is_alive()
    (comment,) = [c for c in w.comments(_ALERT_ID) if MARKER_PREFIX in c]
    assert comment.startswith("Joe Sandbox: MALICIOUS (score 87/100)")
    assert len(w.submissions()) == 1


def test_readiness_follows_the_state_store(hook: _Hook) -> None:
    service = Service(hook.connector, ServiceOptions(poll=False, webhook=True))
    assert service.webhook is not None
    service.webhook.start()
    try:
        url = f"{service.webhook.url}/readyz"
        assert httpx.get(url, timeout=10).json() == {"status": "ready"}
        hook.connector.store.close()
        response = httpx.get(url, timeout=10)
        assert response.status_code == 503
        assert "state store" in response.json()["error"]
        assert httpx.get(f"{service.webhook.url}/healthz", timeout=10).status_code == 200  # alive all the same
    finally:
        service.webhook.stop()
