"""The work queue's pieces on Azure: the index entity of a work key, and the wake-up messages.

The index entity (one per key, in the state partition) holds what SQLite's `work` row holds:
due time, lease, attempts, generation, claim token. A Storage Queues message only says "look at
this key at this time"; whoever receives it reads the index, so a stale, duplicated or early
message is harmless. A message is hidden until its due time (its visibility delay), at most
the 7 days Storage Queues allows; a later due time is reached by re-sending it on delivery.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from joedefender.adapters._queue import QueueEntry
from joedefender.adapters.azure._table import mapped
from joedefender.domain.keys import WorkKey, WorkKind

MAX_DELAY = 7 * 24 * 3600  # seconds: the longest visibility timeout Storage Queues accepts
MAX_SHOWN = 2000  # characters of a poison message's body that `poisoned` returns
_LIVE_RESPONSE_KINDS = frozenset({WorkKind.SAMPLE, WorkKind.CLEANUP})  # they hold live response sessions
_QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,41}[a-z0-9]$")  # + "-liveresponse-poison" <= 63

logger = logging.getLogger("joedefender.store")

LIVE_RESPONSE = "liveresponse"
WORK = "work"


@dataclass(frozen=True, slots=True)
class WorkState(QueueEntry):
    """A work key's index entity: the queue entry, and when its latest wake-up was sent for."""

    wake: float = 0.0  # the latest time a wake-up message was scheduled for

    def properties(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "key": self.key,
            "attempts": self.attempts,
            "owner": self.owner,
            "lease": float(self.lease_until),
            "generation": self.generation,
            "token": self.token,
            "wake": float(self.wake),
            "ready": float(self.ready),
        }
        if self.due is not None:
            found["due"] = float(self.due)
        return found

    @classmethod
    def of(cls, entity: Mapping[str, Any]) -> WorkState:
        due = entity.get("due")
        return cls(
            key=str(entity["key"]),
            due=None if due is None else float(due),
            attempts=int(entity["attempts"]),
            owner=str(entity["owner"]),
            lease_until=float(entity["lease"]),
            generation=int(entity["generation"]),
            token=str(entity.get("token", "")),
            wake=float(entity.get("wake", 0.0)),
        )


def message_body(key: str, due: float) -> str:
    return json.dumps({"key": key, "due": due}, separators=(",", ":"))


def parse_body(body: str) -> tuple[str, float] | None:
    """(key, due) of a wake-up message; None for anything else."""
    try:
        data = json.loads(body)
        key, due = data["key"], float(data["due"])
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(key, str) or not key or not math.isfinite(due):
        return None
    return key, due


def role_of(key: str) -> str:
    """Which queue wakes `key`: live response work goes to its own, small-batch queue."""
    parsed = WorkKey.parse(key)
    return LIVE_RESPONSE if parsed is not None and parsed.kind in _LIVE_RESPONSE_KINDS else WORK


def queue_names(prefix: str) -> dict[str, str]:
    if not _QUEUE_NAME.match(prefix):
        raise ValueError(
            f"storage prefix {prefix!r}: use 3 to 43 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit"
        )
    return {LIVE_RESPONSE: f"{prefix}-liveresponse", WORK: f"{prefix}-work"}


class WakeUps:
    """The two queues of a store: wake-up messages sent hidden until their due time."""

    def __init__(self, service: QueueServiceClient, prefix: str, clock: Callable[[], float]) -> None:
        self.names = queue_names(prefix)
        self._service = service
        self._clock = clock
        self._queues: dict[str, QueueClient] = {
            role: service.get_queue_client(
                name, message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()
            )
            for role, name in self.names.items()
        }

    def create(self) -> None:
        for queue in self._queues.values():
            with mapped(f"creating the queue {queue.queue_name}"), contextlib.suppress(ResourceExistsError):
                queue.create_queue()

    def send(self, key: str, due: float) -> None:
        """A message for `key`, visible at `due` (by the store's clock) or in 7 days, if sooner."""
        delay = min(MAX_DELAY, max(0, math.ceil(due - self._clock())))
        queue = self._queues[role_of(key)]
        with mapped(f"sending to the queue {queue.queue_name}"):
            queue.send_message(message_body(key, due), visibility_timeout=delay, time_to_live=-1)

    def poisoned(self) -> list[tuple[str, str]]:
        """(queue, body) of the messages the Functions host gave up on (`<queue>-poison`)."""
        found: list[tuple[str, str]] = []
        for name in self.names.values():
            poison = self._service.get_queue_client(f"{name}-poison")
            with mapped(f"reading the queue {poison.queue_name}"):
                try:
                    messages = poison.peek_messages(max_messages=32)
                except ResourceNotFoundError:
                    continue  # the host creates it with its first poison message
            found.extend((poison.queue_name, _decoded(str(message.content))[:MAX_SHOWN]) for message in messages)
        return found

    def close(self) -> None:
        for queue in self._queues.values():
            queue.close()
        self._service.close()


def _decoded(content: str) -> str:
    """The body as the Functions host wrote it (base64 by default); as it is if not base64."""
    try:
        return base64.b64decode(content, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return content
