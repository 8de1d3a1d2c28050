"""What the Functions app needs of its store beyond `Store`: push mode (the host delivers queue
messages) and the poison queues. `adapters.azure.AzureStore` provides it (interfaces.md C)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from joedefender.adapters.azure.queue import LIVE_RESPONSE, WORK, queue_names
from joedefender.adapters.azure.store import DEFAULT_PREFIX
from joedefender.pipeline.facade import Store, WorkItem

__all__ = ["DEFAULT_PREFIX", "LIVE_RESPONSE", "WORK", "PushStore", "queue_names"]


class PushStore(Store, Protocol):
    def accept(self, body: str, *, owner: str, now: float, lease_seconds: float) -> WorkItem | None:
        """Lease the item a delivered message names; None if the message is stale, early or the
        item is leased by another (the store has then seen to a wake-up at the true due time)."""
        ...

    def accept_each(
        self, body: str, *, owner: str, now: Callable[[], float], lease_seconds: float
    ) -> Iterator[WorkItem]:
        """Lease, one after the other as the caller asks for the next, the items a message's
        wake-ups name that are due and free."""
        ...

    def relay_outbox(self, now: float, *, grace: float = ..., lease_grace: float | None = ...) -> int:
        """Send the wake-ups a failed send left in the outbox, wake items overdue by `grace`
        whose message was lost, and items whose holder died (their lease ended `lease_grace`
        ago); how many were sent."""
        ...

    def poisoned(self) -> list[tuple[str, str]]:
        """(queue name, message body) of every message in the poison queues."""
        ...

    def queue_names(self) -> dict[str, str]:
        """Role -> queue name."""
        ...
