"""The Functions host's queue-trigger semantics, reproduced over real Storage queues (Azurite).

The host cannot run here (azure-platform.md section 2), so an `Instance` stands in for one host
instance: for each queue-triggered function of the app (its queue name read from the function's
binding metadata, as the host indexes it) a listener receives messages, hides them while they
run, and calls the user function with a real `azure.functions.queue.QueueMessage`. What it does
with the outcome is the host's documented behaviour (storage extension 5.x, host.json
`extensions.queues`):

- success: the message is deleted;
- an exception: the message is made visible again after `visibilityTimeout`; once it has been
  dequeued `maxDequeueCount` times it is moved to `<queue>-poison` instead;
- a message received with a dequeue count already past `maxDequeueCount` (its instances kept
  dying) goes to the poison queue unprocessed;
- at most `batchSize + newBatchThreshold` messages run at once per function, and a new batch is
  fetched once no more than `newBatchThreshold` are in flight;
- an idle listener polls again after a randomised exponential back-off from 100 ms (the host's
  minimum) up to `maxPollingInterval`, and at once after a batch.

A host that dies mid-step deletes nothing: its message reappears when its visibility runs out
(10 minutes on Azure; `in_flight` here, scaled). `Instance.kill` models that: the listeners stop
at once and in-flight messages are abandoned, neither deleted nor made visible. Not reproduced:
the host renews the visibility of a message that runs longer than its hiding time (steps are
short here, and `in_flight` is chosen well above them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as HostQueueMessage
from azure.storage.queue import QueueClient, QueueMessage, TextBase64DecodePolicy, TextBase64EncodePolicy

import azure.functions as func
from tests.azure.functions import bindings_of, functions_of

HOST_JSON = Path(__file__).resolve().parents[2] / "deploy" / "functionapp" / "host.json"
logger = logging.getLogger("tests.azure.harness")
_MIN_POLLING = 0.1  # seconds: the host's first back-off step, which it does not scale


def _seconds(text: str) -> float:
    """host.json's "hh:mm:ss" as seconds."""
    hours, minutes, seconds = (float(part) for part in text.split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds).total_seconds()


@dataclass(frozen=True)
class QueueHost:
    """The queue settings the harness applies; durations in real seconds (already scaled)."""

    batch_size: int
    new_batch_threshold: int
    max_dequeue_count: int
    visibility_timeout: float
    polling: float  # the longest wait between two polls of an idle queue
    in_flight: float  # how long a received message stays hidden while it runs

    @classmethod
    def from_host_json(cls, *, scale: float, in_flight: float, path: Path = HOST_JSON) -> QueueHost:
        """host.json's values, with its durations times `scale`."""
        queues = json.loads(path.read_text())["extensions"]["queues"]
        return cls(
            batch_size=int(queues["batchSize"]),
            new_batch_threshold=int(queues["newBatchThreshold"]),
            max_dequeue_count=int(queues["maxDequeueCount"]),
            visibility_timeout=_seconds(queues["visibilityTimeout"]) * scale,
            polling=max(_MIN_POLLING, _seconds(queues["maxPollingInterval"]) * scale),
            in_flight=in_flight,
        )


def queue_triggers(app: func.FunctionApp) -> dict[str, str]:
    """Function name -> the queue its trigger binds to, from the binding metadata."""
    found = {}
    for name, bindings in bindings_of(app).items():
        for binding in bindings:
            if binding["type"] == "queueTrigger":
                found[name] = str(binding["queueName"])
    return found


def queue_client(connection_string: str, name: str) -> QueueClient:
    """A client encoding as the host does (`messageEncoding: base64`)."""
    return QueueClient.from_connection_string(
        connection_string,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


@dataclass
class Counts:
    """What one instance did, for the tests' assertions."""

    delivered: int = 0
    succeeded: int = 0
    failed: int = 0
    poisoned: int = 0
    dequeue_counts: list[int] = field(default_factory=list)


class Instance:
    """One stand-in host instance running every queue trigger of `app`."""

    def __init__(self, app: func.FunctionApp, connection_string: str, host: QueueHost, *, name: str = "i") -> None:
        self.name = name
        self.host = host
        self.counts = Counts()
        self._connection = connection_string
        self._functions = functions_of(app)
        self._triggers = queue_triggers(app)
        self._stop = threading.Event()
        self._killed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> Instance:
        for function, queue in self._triggers.items():
            thread = threading.Thread(
                target=self._listen, args=(function, queue), name=f"{self.name}-{function}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """A clean shutdown: stop receiving, finish what runs."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def kill(self) -> None:
        """Die now: nothing more is received, deleted or released; running steps are abandoned."""
        self._killed.set()
        self._stop.set()

    def _count(self, **changes: int) -> None:
        with self._lock:
            for name, delta in changes.items():
                setattr(self.counts, name, getattr(self.counts, name) + delta)

    def _listen(self, function: str, queue: str) -> None:
        user_function: Callable[[func.QueueMessage], Any] = self._functions[function].get_user_function()
        client = queue_client(self._connection, queue)
        poison = queue_client(self._connection, f"{queue}-poison")
        capacity = self.host.batch_size + self.host.new_batch_threshold
        running: set[Future[None]] = set()
        idle = _MIN_POLLING
        with client, poison, ThreadPoolExecutor(capacity, thread_name_prefix=f"{self.name}-{function}") as pool:
            while not self._stop.is_set():
                running = {f for f in running if not f.done()}
                if len(running) > self.host.new_batch_threshold:
                    self._stop.wait(0.005)  # the host fetches again when a message finishes
                    continue
                try:
                    batch = list(
                        client.receive_messages(
                            messages_per_page=self.host.batch_size,
                            max_messages=self.host.batch_size,
                            visibility_timeout=max(1, round(self.host.in_flight)),
                        )
                    )
                except ResourceNotFoundError:
                    batch = []  # the queue is created by the store's first send
                if not batch:
                    self._stop.wait(random.uniform(idle / 2, idle))
                    idle = min(idle * 2, self.host.polling)
                    continue
                idle = _MIN_POLLING
                for message in batch:
                    running.add(pool.submit(self._deliver, user_function, client, poison, message))

    def _deliver(
        self,
        user_function: Callable[[func.QueueMessage], Any],
        client: QueueClient,
        poison: QueueClient,
        message: QueueMessage,
    ) -> None:
        if self._killed.is_set():
            return
        dequeue_count = int(message.dequeue_count or 1)
        if dequeue_count > self.host.max_dequeue_count:
            self._to_poison(client, poison, message)
            return
        self._count(delivered=1)
        with self._lock:
            self.counts.dequeue_counts.append(dequeue_count)
        delivered = HostQueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=str(message.content).encode("utf-8"),
            dequeue_count=dequeue_count,
            pop_receipt=message.pop_receipt,
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            time_next_visible=message.next_visible_on,
        )
        try:
            user_function(delivered)
        except Exception:
            if self._killed.is_set():
                return
            self._count(failed=1)
            logger.info("%s: %s failed (dequeue count %d)", self.name, message.id, dequeue_count, exc_info=True)
            if dequeue_count >= self.host.max_dequeue_count:
                self._to_poison(client, poison, message)
            else:
                client.update_message(
                    message, pop_receipt=message.pop_receipt, visibility_timeout=round(self.host.visibility_timeout)
                )
            return
        if self._killed.is_set():
            return  # died before the host could delete it
        self._count(succeeded=1)
        # If its hiding ran out and another instance took it, the delete fails: the host logs it and goes on.
        with contextlib.suppress(ResourceNotFoundError):
            client.delete_message(message, pop_receipt=message.pop_receipt)

    def _to_poison(self, client: QueueClient, poison: QueueClient, message: QueueMessage) -> None:
        with contextlib.suppress(ResourceExistsError):
            poison.create_queue()
        poison.send_message(message.content)
        client.delete_message(message, pop_receipt=message.pop_receipt)
        self._count(poisoned=1)
