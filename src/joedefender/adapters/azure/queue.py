"""The work queue's pieces on Azure: the index entity of a work key, and the wake-up messages.

The index entity (one per key, in the state partition) holds what SQLite's `work` row holds:
due time, lease, attempts, generation, claim token. A Storage Queues message says "look at this
key at this time", and carries the index entity as its sender wrote it, with its ETag: whoever
receives it can lease the item by one conditional write, without reading it first, as long as
nobody changed it since; if someone did, the write fails and the receiver reads it. So a stale,
duplicated or early message is harmless. A message is hidden until its due time (its visibility
delay), at most the 7 days Storage Queues allows; a later due time is reached by re-sending it
on delivery. The wake-ups of one unit of work that go to the same queue at the same second travel
in one message (`{"wakes": [...]}`, at most MAX_WAKES_PER_MESSAGE): the thirty triages a poll's
unit of work makes cost one send, one receive and one delete, not thirty of each.
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
MAX_WAKES_PER_MESSAGE = 32
# Characters of a message body at most: Storage Queues takes 64 KiB, and base64 makes 4/3 of it.
MAX_BODY = 45_000
_MAX_ETAG = 200  # characters: an ETag is a quoted timestamp (W/"datetime'...'")
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
            "failures": self.failures,
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
            failures=int(entity.get("failures", 0)),
        )


Seen = tuple[WorkState, str]  # an index entity as read or written, and its ETag


@dataclass(frozen=True, slots=True)
class WakeUp:
    """A delivered message: look at `key` at `due`; `seen` is the index entity as its sender
    wrote it (None if the message does not say, or says something unreadable)."""

    key: str
    due: float
    seen: Seen | None = None


Wake = tuple[str, float, Seen | None]  # a wake-up to send: key, due, the entity as written


def _wake(key: str, due: float, seen: Seen | None) -> dict[str, Any]:
    data: dict[str, Any] = {"key": key, "due": due}
    if seen is not None and seen[0].key == key:
        data |= {"state": seen[0].properties(), "etag": seen[1]}
    return data


def message_body(key: str, due: float, seen: Seen | None = None) -> str:
    return json.dumps(_wake(key, due, seen), separators=(",", ":"))


def bodies(wakes: list[Wake]) -> list[tuple[str, list[Wake]]]:
    """The message bodies that carry `wakes` (all for one queue and visibility delay), each with
    the wake-ups it carries: several to a message, within MAX_WAKES_PER_MESSAGE and MAX_BODY; a
    lone one in the one-key form."""
    found: list[tuple[str, list[Wake]]] = []
    entries: list[str] = []
    carried: list[Wake] = []
    for wake in wakes:
        entry = json.dumps(_wake(*wake), separators=(",", ":"))
        if entries and (len(entries) == MAX_WAKES_PER_MESSAGE or sum(map(len, entries)) + len(entry) > MAX_BODY):
            found.append((_many(entries), carried))
            entries, carried = [], []
        entries.append(entry)
        carried.append(wake)
    if entries:
        found.append((_many(entries), carried))
    return found


def _many(entries: list[str]) -> str:
    return entries[0] if len(entries) == 1 else '{"wakes":[' + ",".join(entries) + "]}"


def parse_wakes(body: str) -> list[WakeUp]:
    """The wake-ups a message carries, in order (what is not one is left out). The entity each
    carries is only a guess at the stored one (a write conditional on its ETag checks it), but it
    must be one."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    wakes = data.get("wakes") if isinstance(data, dict) else None
    if not isinstance(wakes, list):
        one = _wakeup(data)
        return [] if one is None else [one]
    found = (_wakeup(entry) for entry in wakes[:MAX_WAKES_PER_MESSAGE])
    return [wakeup for wakeup in found if wakeup is not None]


def _wakeup(data: object) -> WakeUp | None:
    if not isinstance(data, dict):
        return None
    try:
        key, due = data["key"], float(data["due"])
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(key, str) or not key or not math.isfinite(due):
        return None
    return WakeUp(key, due, _seen(data, key))


def _seen(data: dict[str, Any], key: str) -> Seen | None:
    state, tag = data.get("state"), data.get("etag")
    if not isinstance(state, dict) or not isinstance(tag, str) or not tag or len(tag) > _MAX_ETAG:
        return None
    try:
        seen = WorkState.of(state)
    except (ValueError, TypeError, KeyError):
        return None
    numbers = (seen.lease_until, seen.wake, seen.due if seen.due is not None else 0.0)
    if seen.key != key or not all(math.isfinite(n) for n in numbers):
        return None
    return seen, tag


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

    def send(self, key: str, due: float, seen: Seen | None = None) -> None:
        """A message for `key`, visible at `due` (by the store's clock) or in 7 days, if sooner;
        with `seen`, the index entity as just written, so its receiver need not read it."""
        self.send_body(role_of(key), message_body(key, due, seen), self.delay(due))

    def delay(self, due: float) -> int:
        """The visibility delay of a wake-up for `due`: whole seconds, at most 7 days."""
        return min(MAX_DELAY, max(0, math.ceil(due - self._clock())))

    def send_body(self, role: str, body: str, delay: int) -> None:
        queue = self._queues[role]
        with mapped(f"sending to the queue {queue.queue_name}"):
            queue.send_message(body, visibility_timeout=delay, time_to_live=-1)

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
