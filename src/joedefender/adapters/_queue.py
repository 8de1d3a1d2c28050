"""The work queue's rules for one queued key, as the `WorkQueue` port states them: shared by the
stores that keep queue entries as values (memory, Azure); SQLite states the same rules in SQL."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Self

from joedefender.pipeline.ports import WorkItem


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A queued key. `due` is None while a claim holds the item and nobody re-enqueued it since
    (the claim consumed that due time)."""

    key: str
    due: float | None
    attempts: int = 0
    owner: str = ""
    lease_until: float = 0.0
    generation: int = 1
    token: str = ""  # the holding claim's
    failures: int = 0  # consecutive failed steps, as the last reschedule said

    @property
    def ready(self) -> float:
        """When a claim can take it: a free item when due, a leased one when its lease ends."""
        if self.owner:
            return self.lease_until
        assert self.due is not None  # a free item always has a due time
        return self.due

    def enqueued(self, due_at: float) -> Self:
        """Moved earlier (never later), one generation on; a held lease stays held."""
        due = due_at if self.due is None else min(self.due, due_at)
        return replace(self, due=due, generation=self.generation + 1)

    def claimed(self, owner: str, until: float) -> Self:
        return replace(
            self, owner=owner, lease_until=until, due=None, attempts=self.attempts + 1, token=secrets.token_hex(16)
        )

    def released(self, due: float, failures: int = 0) -> Self:
        return replace(self, owner="", lease_until=0.0, due=due, token="", failures=failures)

    def holds(self, token: str) -> bool:
        """Whether the claim `token` still holds this item: nothing took or released it since."""
        return bool(self.owner and self.token) and self.token == token

    def due_after_reschedule(self, item: WorkItem, due_at: float) -> float:
        """The due time once the claim `item` reschedules to `due_at`."""
        if self.generation == item.generation or self.due is None:
            return float(due_at)
        return min(self.due, float(due_at))  # re-enqueued while we held it: the earlier time wins

    def due_after_complete(self, item: WorkItem) -> float | None:
        """The due time once the claim `item` completes; None: the item is deleted."""
        if self.generation == item.generation:
            return None
        return self.due if self.due is not None else item.due_at  # re-enqueued meanwhile

    def item(self, due_at: float | None = None) -> WorkItem:
        return WorkItem(
            key=self.key,
            due_at=self.ready if due_at is None else due_at,
            attempts=self.attempts,
            owner=self.owner,
            lease_until=self.lease_until,
            generation=self.generation,
            token=self.token,
            failures=self.failures,
        )
