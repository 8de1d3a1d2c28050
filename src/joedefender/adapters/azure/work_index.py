"""The work queue on Azure: one index entity per work key in the state partition, woken by messages.

Every change of an index entity is an ETag-conditional write against the entity as this store
last read or wrote it (`_known`), or as the message that woke it says it was sent: no read comes
first unless a write finds the entity changed. A lost race reads the entity and tries again.

After a write that needs one, the wake-up is sent, carrying the entity as written so that its
receiver need not read it. A crash between the write and the send loses that message; the relay
(the sweeper timer's job) wakes an item overdue by its grace that no wake-up was sent for since,
and an item whose lease ran out (its holder died) a short grace after the lease's end. A send
that fails while the process lives leaves the messages in an outbox entity for the relay.
"""

from __future__ import annotations

import builtins
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from joedefender.adapters._writes import Enqueue, Fence, Operation
from joedefender.adapters.azure import state as rows
from joedefender.adapters.azure._table import Lost, Partition, TableOperation, etag, if_unchanged, put
from joedefender.adapters.azure.queue import Seen, WakeUp, WakeUps, WorkState, bodies, role_of
from joedefender.pipeline.ports import LeaseLost, StoreError, StoreUnavailable, WorkItem

ROUNDS = 100  # attempts of one write against an index entity that others keep changing
_MAX_KNOWN = 10_000
_SPREAD = 8  # items one claim tries before it reads the index again

logger = logging.getLogger("joedefender.store")

Message = tuple[str, float]  # (work key, due)


def number(value: float) -> str:
    """A Double literal for an OData filter (the SDK's parameters render 0.0 and 1.0 as booleans)."""
    return f"{float(value):.6f}"


class WorkIndex:
    """The `WorkQueue` port's entities and their wake-ups; the store composes it with documents."""

    def __init__(self, state: Partition, wakeups: WakeUps, clock: Callable[[], float], where: str) -> None:
        self._state = state
        self._wakeups = wakeups
        self._clock = clock
        self._where = where
        self._known: dict[str, Seen] = {}  # work key -> as last read or written here

    # -- what this store knows of an entity -------------------------------------------------

    def state(self, key: str, *, fresh: bool) -> tuple[WorkState | None, str | None]:
        """A work key's state and ETag: as this store last saw it, or (`fresh`) as stored now."""
        if not fresh:
            known = self._known.get(key)
            return (None, None) if known is None else known
        entity = self._state.get(rows.work_row(key))
        if entity is None:
            self._known.pop(key, None)
            return None, None
        return self.seen(entity), etag(entity)

    def seen(self, entity: Any) -> WorkState:
        state = WorkState.of(entity)
        self._keep(state, etag(entity))
        return state

    def _keep(self, state: WorkState, tag: str) -> None:
        if len(self._known) >= _MAX_KNOWN:
            self._known.clear()
        self._known[state.key] = (state, tag)

    def forget(self, key: str) -> None:
        self._known.pop(key, None)

    def known(self, key: str) -> Seen | None:
        return self._known.get(key)

    # -- a unit of work's index writes -------------------------------------------------------

    def writes(
        self, operations: Sequence[Operation], now: float, *, fresh: Callable[[str], bool]
    ) -> tuple[list[TableOperation], list[WorkState], list[Message]]:
        """The index writes of a unit of work's enqueues and fences, each ETag-checked against
        the entity as known (a fence alone rewrites it unchanged: the check is the point), the
        states written, and the wake-ups they need. LeaseLost for a fence whose claim no longer
        holds. A key `fresh` names is read first; any other key this store has not seen is taken
        to be new, as most enqueued keys are: if it is not, the transaction fails, and the
        caller reads the key the failure names."""
        dues: dict[str, list[float]] = {}
        tokens: dict[str, list[str]] = {}
        for operation in operations:
            if isinstance(operation, Fence):
                tokens.setdefault(operation.key, []).append(operation.token)
                dues.setdefault(operation.key, [])
            elif isinstance(operation, Enqueue):
                dues.setdefault(operation.key, []).append(float(operation.due_at))
        batch: list[TableOperation] = []
        states: list[WorkState] = []
        messages: list[Message] = []
        for key, times in dues.items():
            before, tag = self._fenced(key, tokens.get(key, []), fresh=fresh(key))
            after = before
            for due in times:
                after = WorkState(key, due) if after is None else after.enqueued(due)
            assert after is not None
            wake = None if after is before else _wake_needed(before, after, now)
            if wake is not None:
                messages.append((key, wake))
                after = replace(after, wake=max(after.wake, wake))
            batch.append(put(self._state.entity(rows.work_row(key), **after.properties()), tag))
            states.append(after)
        return batch, states, messages

    def _fenced(self, key: str, tokens: Sequence[str], *, fresh: bool) -> tuple[WorkState | None, str | None]:
        """The key's state to write against; LeaseLost if one of `tokens` no longer holds it."""
        before, tag = self.state(key, fresh=fresh)
        if tokens and not fresh and not _all_hold(before, tokens):
            before, tag = self.state(key, fresh=True)  # as known here; read it to be sure
        if tokens and not _all_hold(before, tokens):
            raise LeaseLost(key)
        return before, tag

    def written(self, states: Iterable[WorkState], results: Iterable[Mapping[str, Any]]) -> None:
        """Remember the ETags a committed transaction gave the entities it wrote."""
        for state, result in zip(states, results, strict=False):
            self._keep(state, str(result["etag"]))

    def wake(self, messages: Sequence[Message]) -> None:
        """Send the wake-ups of a committed write, each with the entity as this store wrote it,
        those for one queue and second together; a send that fails leaves the rest in an outbox
        entity for the relay (the write has committed, so this never fails it)."""
        groups: dict[tuple[str, int], list[Message]] = {}
        for key, due in messages:
            groups.setdefault((role_of(key), self._wakeups.delay(due)), []).append((key, due))
        unsent = list(messages)
        for (role, delay), group in groups.items():
            for body, carried in bodies([(key, due, self._known.get(key)) for key, due in group]):
                try:
                    self._wakeups.send_body(role, body, delay)
                except StoreError as exc:
                    self._keep_for_relay(unsent, exc)
                    return
                for key, due, _ in carried:
                    unsent.remove((key, due))

    def _keep_for_relay(self, messages: Sequence[Message], exc: StoreError) -> None:
        try:
            properties = rows.outbox_properties(list(messages), self._clock())
            self._state.submit([("create", self._state.entity(rows.outbox_row(), **properties))])
        except (StoreError, Lost) as again:
            logger.warning(
                "%s: %d wake-up(s) lost (%s; %s): the relay wakes them", self._where, len(messages), exc, again
            )
            return
        logger.warning("%s: %d wake-up(s) left in the outbox for the relay: %s", self._where, len(messages), exc)

    def swap(self, key: str, tag: str, new: WorkState | None, wake_at: float | None = None) -> bool:
        """Replace (None: delete) a work index entity unless it changed since it was at `tag`;
        then send a wake-up for `wake_at`, if given."""
        row = rows.work_row(key)
        operation: TableOperation
        if new is None:
            operation = ("delete", self._state.entity(row), if_unchanged(tag))
        else:
            operation = put(self._state.entity(row, **new.properties()), tag)
        try:
            [result] = self._state.submit([operation])
        except Lost:
            self.forget(key)
            return False
        if new is None:
            self.forget(key)
            return True
        self._keep(new, str(result["etag"]))
        if wake_at is not None:
            self.wake([(key, wake_at)])
        return True

    # -- taking work ---------------------------------------------------------------------------

    def rows(self, condition: str = "") -> builtins.list[Any]:
        return self._state.rows(rows.work_prefix(), condition)

    def claim(self, owner: str, now: float, lease_seconds: float) -> WorkItem | None:
        """Pull mode: the earliest due, free item of the index (ties in key order)."""
        until = float(now + lease_seconds)
        for _ in range(ROUNDS):
            ready = self.rows(f"ready le {number(now)}")
            if not ready:
                return None
            ready.sort(key=lambda e: (float(e["ready"]), str(e["key"])))
            for attempt in range(min(len(ready), _SPREAD)):
                # The earliest first; once that race is lost, racing claimers would all go for
                # the next one: each takes one of the rest at random (no order holds among racers).
                entity = ready.pop(0 if attempt == 0 else random.randrange(len(ready)))
                state = self.seen(entity)
                claimed = state.claimed(owner, until)
                if self.swap(state.key, etag(entity), claimed):
                    return claimed.item(due_at=state.ready)
        raise StoreUnavailable(f"{self._where}: every claim lost its race")

    def accept(self, wakeup: WakeUp, *, owner: str, now: float, lease_seconds: float) -> WorkItem | None:
        """Push mode: lease the item a delivered wake-up names, if it is due and free (see
        `AzureStore.accept`). The entity the message carries is tried first, unread."""
        key, due = wakeup.key, wakeup.due
        until = float(now + lease_seconds)
        guess = wakeup.seen
        if guess is not None and guess[0].ready <= now:
            claimed = guess[0].claimed(owner, until)
            if self.swap(key, guess[1], claimed):
                return claimed.item(due_at=guess[0].ready)
        for _ in range(ROUNDS):
            state, tag = self.state(key, fresh=True)
            if state is None or tag is None:
                return None
            if state.ready <= now:
                claimed = state.claimed(owner, until)
                if self.swap(key, tag, claimed):
                    return claimed.item(due_at=state.ready)
                continue
            if not state.owner:
                if due > now:
                    self._wakeups.send(key, due, (state, tag))
                return None
            if state.wake >= state.lease_until:
                return None
            if self.swap(key, tag, replace(state, wake=state.lease_until), state.lease_until):
                return None
        raise StoreUnavailable(f"{self._where}: the work index entity of {key!r} changed on every attempt")

    def renew(self, item: WorkItem, now: float, lease_seconds: float) -> WorkItem | None:
        until = float(now + lease_seconds)
        for round_ in range(ROUNDS):
            state, tag = self.state(item.key, fresh=round_ > 0)
            if state is None or tag is None or not state.holds(item.token):
                if round_ == 0:
                    continue  # as known here; it may have changed since: read it
                return None
            if self.swap(item.key, tag, replace(state, lease_until=until)):
                return replace(item, lease_until=until)
        raise StoreUnavailable(f"{self._where}: the work index entity of {item.key!r} changed on every attempt")

    def release(self, item: WorkItem, due: Callable[[WorkState], float | None], failures: int = 0) -> None:
        """Complete or reschedule: change the item if `item` still holds it; `due` gives the
        time it is due again, or None to delete it; `failures` is kept for the next claim. Only
        the entity is written and, if due again, one wake-up sent: a step that learnt nothing
        costs nothing more."""
        for round_ in range(ROUNDS):
            state, tag = self.state(item.key, fresh=round_ > 0)
            if state is None or tag is None or not state.holds(item.token):
                if round_ == 0:
                    continue  # not known here, or as known here; it may have changed since: read it
                return  # done by someone else, or the lease was lost
            again = due(state)
            if again is None:
                done = self.swap(item.key, tag, None)
            else:
                released = replace(state.released(again, failures), wake=max(state.wake, again))
                done = self.swap(item.key, tag, released, again)
            if done:
                return
        raise StoreUnavailable(f"{self._where}: the work index entity of {item.key!r} changed on every attempt")

    # -- the relay (the sweeper timer's job) ----------------------------------------------------

    def wake_stranded(self, now: float, *, grace: float, lease_grace: float) -> int:
        """Wake items overdue by more than `grace` that no wake-up was sent for since (a lost or
        poisoned message), and leased items whose lease ended more than `lease_grace` ago with
        no wake-up since (their holder died: its message would come back only after the host's
        10 minutes). How many were woken."""
        woken = 0
        overdue = self.rows(f"ready le {number(now - grace)}")
        expired = self.rows(f"owner ne '' and lease le {number(now - lease_grace)} and ready gt {number(now - grace)}")
        stranded = [(e, self.seen(e).wake <= now - grace) for e in overdue]
        stranded += [(e, self.seen(e).wake < float(e["lease"])) for e in expired]  # none since the lease's end
        for entity, asleep in stranded:
            state = WorkState.of(entity)
            if asleep and self.swap(state.key, etag(entity), replace(state, wake=now), now):
                woken += 1
        return woken


def _all_hold(state: WorkState | None, tokens: Sequence[str]) -> bool:
    return state is not None and all(state.holds(token) for token in tokens)


def _wake_needed(before: WorkState | None, after: WorkState, now: float) -> float | None:
    """When an enqueue must wake the item: at its new due time if that moved (a free item), now
    if its lease ran out with nobody to take it again; a live lease's holder wakes it itself."""
    if not after.owner:
        assert after.due is not None
        return after.due if before is None or before.due != after.due else None
    return now if after.lease_until <= now else None
