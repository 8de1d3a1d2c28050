"""The registered functions called as the host calls them (real `HttpRequest`, `QueueMessage`
and `TimerRequest` objects) on the Azure store on Azurite, against the emulators."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

import azure.functions as func
from joedefender.domain.keys import triage_key
from joedefender.hosts.azure.entry import build_from_environment
from joedefender.hosts.azure.runtime import Runtime
from tests.azure.functions import call
from tests.azure.harness import queue_client
from tests.azure.rig import wait_for
from tests.azurite import unique_prefix
from tests.pipeline.builders import alert, file_evidence, machine, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]
_PATH = "C:\\Users\\eve\\Downloads\\dropper.exe"
_ALERT = alert(1, 1, file_evidence("dropper", _PATH))
_ALERT_ID = str(_ALERT["id"])


@dataclass
class _App:
    runtime: Runtime
    functions: func.FunctionApp
    connection: str

    def post(self, body: dict[str, Any]) -> func.HttpResponse:
        request = func.HttpRequest(
            method="POST",
            url="/api/alerts",
            body=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        answer: func.HttpResponse = call(self.functions, "alerts", request)
        return answer

    def status(self, alert_id: str | None = None) -> str:
        route = {} if alert_id is None else {"alert_id": alert_id}
        request = func.HttpRequest(method="GET", url="/api/status", body=b"", route_params=route)
        answer: func.HttpResponse = call(self.functions, "status", request)
        assert answer.status_code == 200
        return answer.get_body().decode()

    def queue(self, role: str = "work") -> str:
        return self.runtime.hosted().store.queue_names()[role]

    def receive(self, role: str = "work") -> list[Any]:
        """The messages now visible on the queue, hidden for 30 s as the host hides what it runs."""
        with queue_client(self.connection, self.queue(role)) as client:
            return list(client.receive_messages(max_messages=32, visibility_timeout=30))

    def stored(self, role: str = "work") -> int:
        with queue_client(self.connection, self.queue(role)) as client:
            return int(client.get_queue_properties().approximate_message_count or 0)

    def run(self, message: Any, role: str = "work") -> None:
        delivered = QueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=str(message.content).encode(),
            dequeue_count=message.dequeue_count,
            pop_receipt=message.pop_receipt,
        )
        call(self.functions, role, delivered)

    def history(self) -> list[tuple[str, str]]:
        return [(e.step, e.outcome) for e in self.runtime.hosted().store.history(f"alert:{_ALERT_ID}")]


def _make(make_world: WorldFactory, azurite: Any, scale: float) -> Iterator[_App]:
    raw = world(
        samples={"dropper": "dropper bytes"},
        machines=[machine(1, files={_PATH: "dropper"})],
        alerts=[_ALERT],
        verdicts=[{"sample": "dropper", "detection": "malicious", "score": 87}],
        time_scale=scale,
    )
    w = make_world(scenario(raw))
    environ = w.values | {"AzureWebJobsStorage": azurite.connection_string, "StoragePrefix": unique_prefix()}
    runtime, functions = build_from_environment(environ, time_scale=scale, instance="direct")
    yield _App(runtime, functions, azurite.connection_string)
    runtime.close()


@pytest.fixture
def app(make_world: WorldFactory, azurite: Any) -> Iterator[_App]:
    yield from _make(make_world, azurite, 0.01)


@pytest.fixture
def fast_app(make_world: WorldFactory, azurite: Any) -> Iterator[_App]:
    """A clock so fast that the sweeper's grace passes in a fraction of a second."""
    yield from _make(make_world, azurite, 0.0001)


def test_a_delivered_message_advances_its_item_once(app: _App) -> None:
    assert app.post({"id": _ALERT_ID}).status_code == 202
    [message] = app.receive()
    assert json.loads(message.content)["key"] == triage_key(_ALERT_ID)
    app.run(message)
    assert ("triage", "accepted") in app.history()
    # The triage queued the sample's collection on the live response queue.
    assert app.stored("liveresponse") == 1
    # The host delivers a message again (its instance died before deleting it): nothing happens twice.
    app.run(message)
    assert app.history().count(("triage", "accepted")) == 1
    assert app.stored("liveresponse") == 1


def test_a_message_for_work_that_is_not_due_is_consumed_without_work(app: _App) -> None:
    app.post({"id": _ALERT_ID})
    [message] = app.receive()
    body = json.dumps({"key": "triage:nothing", "due": 0})
    stale = SimpleNamespace(id="m", content=body, dequeue_count=1, pop_receipt="p")
    app.run(stale)  # an item that does not exist: consumed, no error for the host to retry
    assert app.history() == [("intake", "received")]
    app.run(message)
    assert ("triage", "accepted") in app.history()


def test_the_sweeper_wakes_work_whose_message_was_lost(fast_app: _App) -> None:
    app = fast_app
    app.post({"id": _ALERT_ID})
    with queue_client(app.connection, app.queue()) as client:
        client.clear_messages()  # the message is lost
    assert app.stored() == 0

    def swept() -> bool:
        call(app.functions, "sweeper", TimerRequest(past_due=False))
        return app.stored() > 0

    wait_for(swept, 10, "the sweeper waking the triage")
    [message] = app.receive()
    app.run(message)
    assert ("triage", "accepted") in app.history()


def test_status_on_the_azure_store_shows_history_and_poisoned_messages(app: _App) -> None:
    app.post({"id": _ALERT_ID})
    [message] = app.receive()
    app.run(message)
    text = app.status(_ALERT_ID)
    assert f"Alert {_ALERT_ID}: accepted" in text
    assert "from webhook" in text
    with queue_client(app.connection, f"{app.queue()}-poison") as poison:
        poison.create_queue()
        poison.send_message(json.dumps({"key": triage_key("da6386400000000099_9"), "due": 0}))
    overview = app.status()
    assert "poison queue messages: 1" in overview
    assert "da6386400000000099_9" in overview
