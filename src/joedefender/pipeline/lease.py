"""The lease a running step holds on its work item: renewed while it runs, and checked before it acts.

A step can outlive its lease (a multi-GB GetFile and upload, a PATCH held by a slow network, a
wait for a 429's Retry-After). The engine's `Heartbeat` renews the lease of every step under way
every third of the lease, so no other worker takes the item meanwhile. If a renewal finds the
lease lost (the process stalled past it and another worker claimed the item), the step learns it
through `Claims`: its units of work are fenced with the claim (the commit applies nothing and
raises `LeaseLost`), waits end early with `LeaseLost`, and long transfers stop at their next chunk.
What it did before is found by the next owner through the steps' usual looks at the world.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from joedefender.pipeline.ports import LeaseLost, StoreError, WorkItem, WorkQueue

logger = logging.getLogger("joedefender.engine")


class Claim:
    """One claimed work item as its last renewal left it, and whether its lease is known lost."""

    def __init__(self, item: WorkItem) -> None:
        self._item = item
        self._lost = threading.Event()

    def __repr__(self) -> str:
        return f"<claim on {self._item.key!r}{', lost' if self.lost else ''}>"

    @property
    def item(self) -> WorkItem:
        return self._item

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def renewed(self, item: WorkItem) -> None:
        self._item = item

    def lose(self) -> None:
        self._lost.set()

    def wait_lost(self, seconds: float) -> bool:
        """Wait up to `seconds`; True as soon as the lease is known lost."""
        return self._lost.wait(seconds)


class Claims:
    """The claim each thread runs its step under (none outside the engine: the CLI, the webhook).

    The context fences units of work with it; the adapters' waits (`sleep`) and the sample
    staging (`check`) consult it, so they stop once the lease is lost.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def current(self) -> Claim | None:
        claim: Claim | None = getattr(self._local, "claim", None)
        return claim

    @contextmanager
    def running(self, claim: Claim) -> Iterator[Claim]:
        """Run the block (a step) under `claim` in this thread."""
        previous = self.current()
        self._local.claim = claim
        try:
            yield claim
        finally:
            self._local.claim = previous

    def held(self) -> bool:
        """False once this thread's step is known to have lost its lease."""
        claim = self.current()
        return claim is None or not claim.lost

    def check(self) -> None:
        """Raise `LeaseLost` if this thread's step lost its lease: call before a side effect."""
        claim = self.current()
        if claim is not None and claim.lost:
            raise LeaseLost(claim.item.key)

    def sleep(self, seconds: float) -> None:
        """`time.sleep`, except that a step whose lease is lost meanwhile wakes at once with
        `LeaseLost`: a worker waiting out a 429 does not then send what its successor sends too."""
        claim = self.current()
        if claim is None:
            time.sleep(seconds)
            return
        self.check()
        if claim.wait_lost(seconds):
            raise LeaseLost(claim.item.key)


class Heartbeat:
    """Renews the lease of every claim under way, each every `interval` real seconds, from one
    daemon thread that runs only while there is something to renew (and a little after)."""

    def __init__(
        self,
        queue: WorkQueue,
        *,
        now: Callable[[], float],
        lease_seconds: Callable[[], float],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._now = now
        self._lease_seconds = lease_seconds
        self._monotonic = monotonic
        self._wake = threading.Condition()
        self._due: dict[Claim, float] = {}  # claim -> monotonic time of its next renewal
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return self._lease_seconds() / 3

    @contextmanager
    def hold(self, item: WorkItem) -> Iterator[Claim]:
        """Keep `item`'s lease renewed while the block runs."""
        claim = Claim(item)
        with self._wake:
            self._due[claim] = self._monotonic() + self.interval
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)
                self._thread.start()
            self._wake.notify()
        try:
            yield claim
        finally:
            with self._wake:
                del self._due[claim]

    def _run(self) -> None:
        while True:
            with self._wake:
                due = self._next_batch()
                if due is None:
                    self._thread = None
                    return
            for claim in due:
                self._renew(claim)

    def _next_batch(self) -> list[Claim] | None:
        """The claims due for renewal, once some are; None when nothing was held for an interval.
        The caller holds the condition."""
        idle_since: float | None = None
        while True:
            now = self._monotonic()
            if not self._due:
                idle_since = now if idle_since is None else idle_since
                if now - idle_since >= self.interval:
                    return None
                self._wake.wait(self.interval)
                continue
            idle_since = None
            due = [claim for claim, at in self._due.items() if at <= now]
            if due:
                for claim in due:
                    self._due[claim] = now + self.interval
                return due
            self._wake.wait(min(self._due.values()) - now)

    def _renew(self, claim: Claim) -> None:
        item = claim.item
        now = self._now()
        try:
            renewed = self._queue.renew(item, now, self._lease_seconds())
        except StoreError as exc:  # the next beat tries again, unless the lease ran out meanwhile
            if now >= item.lease_until and self._lose(claim):
                logger.warning("%s: the lease ran out while renewing it failed (%s); the step stops", item.key, exc)
            return
        if renewed is not None:
            claim.renewed(renewed)
        elif self._lose(claim):
            logger.warning("%s: the lease is lost (another worker owns the item now); the step stops", item.key)

    def _lose(self, claim: Claim) -> bool:
        """Mark the claim lost if its step still runs (once it ended, its lease was given back)."""
        with self._wake:
            if claim not in self._due or claim.lost:
                return False
            claim.lose()
            return True
