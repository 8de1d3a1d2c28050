"""The harness itself against Azurite: it must behave as the Functions host does, or the tests
built on it prove nothing. A toy app with one queue trigger, whose behaviour each test sets."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

import azure.functions as func
from tests.azure.harness import Instance, QueueHost, queue_client, queue_triggers

_HOST = replace(QueueHost.from_host_json(scale=0.01, in_flight=1.0), max_dequeue_count=3)


def _wait(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        time.sleep(0.02)


class _Toy:
    """A one-function app on a fresh queue; `behaviour` decides what each delivery does."""

    def __init__(self, connection: str) -> None:
        self.queue = f"toy-{uuid.uuid4().hex[:12]}"
        self.connection = connection
        self.seen: list[tuple[str, int]] = []  # (body, dequeue count)
        self.behaviour: Callable[[func.QueueMessage], None] = lambda _: None
        self.app = func.FunctionApp()

        @self.app.function_name("toy")
        @self.app.queue_trigger(arg_name="message", queue_name=self.queue, connection="AzureWebJobsStorage")
        def toy(message: func.QueueMessage) -> None:
            self.seen.append((message.get_body().decode(), int(message.dequeue_count or 0)))
            self.behaviour(message)

        with queue_client(connection, self.queue) as client:
            client.create_queue()

    def send(self, body: str) -> None:
        with queue_client(self.connection, self.queue) as client:
            client.send_message(body)

    def poisoned(self) -> list[str]:
        with queue_client(self.connection, f"{self.queue}-poison") as client:
            try:
                return [str(m.content) for m in client.peek_messages(max_messages=32)]
            except ResourceNotFoundError:
                return []

    def stored(self) -> int:
        """Messages in the queue, hidden ones included (a deleted one is gone from the count)."""
        with queue_client(self.connection, self.queue) as client:
            return int(client.get_queue_properties().approximate_message_count or 0)


@pytest.fixture
def toy(azurite: Any) -> _Toy:
    return _Toy(azurite.connection_string)


def test_the_trigger_queue_comes_from_the_binding_metadata(toy: _Toy) -> None:
    assert queue_triggers(toy.app) == {"toy": toy.queue}


def test_success_deletes_the_message(toy: _Toy) -> None:
    instance = Instance(toy.app, toy.connection, _HOST).start()
    try:
        toy.send('{"n": 1}')
        _wait(lambda: instance.counts.succeeded == 1)
    finally:
        instance.stop()
    assert toy.seen == [('{"n": 1}', 1)]  # decoded from base64, as the host hands it over
    assert toy.stored() == 0


def test_a_failing_message_is_retried_then_poisoned(toy: _Toy) -> None:
    def fail(_: func.QueueMessage) -> None:
        raise RuntimeError("the store is down")

    toy.behaviour = fail
    instance = Instance(toy.app, toy.connection, _HOST).start()
    try:
        toy.send("doomed")
        _wait(lambda: instance.counts.poisoned == 1)
    finally:
        instance.stop()
    assert toy.seen == [("doomed", 1), ("doomed", 2), ("doomed", 3)]
    assert toy.poisoned() == ["doomed"]
    assert toy.stored() == 0


def test_an_instance_that_dies_mid_step_leaves_its_message_to_another(toy: _Toy) -> None:
    started, release = threading.Event(), threading.Event()

    def hang(message: func.QueueMessage) -> None:
        if int(message.dequeue_count or 0) == 1:
            started.set()
            release.wait(10)  # mid-step when the instance dies

    toy.behaviour = hang
    dying = Instance(toy.app, toy.connection, _HOST, name="dying").start()
    toy.send("step")
    assert started.wait(10)
    killed_at = time.monotonic()
    dying.kill()
    heir = Instance(toy.app, toy.connection, _HOST, name="heir").start()
    try:
        _wait(lambda: heir.counts.succeeded == 1)
        redelivered_after = time.monotonic() - killed_at
    finally:
        release.set()
        heir.stop()
        dying.stop()
    assert toy.seen == [("step", 1), ("step", 2)]
    assert dying.counts.succeeded == 0
    assert redelivered_after >= _HOST.in_flight * 0.5  # hidden until the visibility ran out
    assert toy.stored() == 0
