"""The lease of a running step: renewed by the heartbeat, and what a step does once it is lost.

On the in-memory store and the fakes. A step loses its lease when its process stalls past it and
another worker claims the item; the tests make that happen by moving the clock and claiming.
"""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from joedefender.adapters.memory import MemoryStore
from joedefender.domain.jobs import LinkState
from joedefender.domain.keys import WorkKind
from joedefender.pipeline.clock import Clock
from joedefender.pipeline.collection.staging import SampleStaging
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.context import Context
from joedefender.pipeline.facade import Application
from joedefender.pipeline.lease import Claims, Heartbeat
from joedefender.pipeline.ports import LeaseLost, WorkItem
from tests.fakes import FakeDefender, FakeSandbox, file_alert
from tests.stores.helpers import FakeClock, wait_for

M1 = "1" * 40
PAYLOAD = b"MZ a payload"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


# -- the heartbeat ---------------------------------------------------------------------------------


def _claimed(store: MemoryStore, now: float, lease: float) -> WorkItem:
    store.enqueue("k", 0.0)
    item = store.claim("w1", now=now, lease_seconds=lease)
    assert item is not None
    return item


def test_the_heartbeat_renews_a_step_that_outlives_its_lease() -> None:
    store = MemoryStore()
    lease = 0.3  # renewed every 0.1 real seconds
    heartbeat = Heartbeat(store, now=time.time, lease_seconds=lambda: lease)
    item = _claimed(store, time.time(), lease)
    with heartbeat.hold(item) as claim:
        wait_for(lambda: store.items()[0].lease_until >= item.lease_until + 3 * lease)  # a second past it
        assert store.claim("w2", now=time.time(), lease_seconds=lease) is None
        assert not claim.lost
        assert claim.item.token == item.token
        assert claim.item.lease_until > item.lease_until
    store.complete(item)
    assert store.pending() == 0


def test_a_lease_found_lost_wakes_the_steps_wait_with_lease_lost() -> None:
    store, clock, claims = MemoryStore(), FakeClock(100.0), Claims()
    heartbeat = Heartbeat(store, now=clock, lease_seconds=lambda: 0.3)
    item = _claimed(store, clock.now, 0.3)
    with heartbeat.hold(item) as claim, claims.running(claim):
        clock.now = 200.0  # the process stalled: the lease ran out, and another worker took the item
        assert store.claim("w2", now=300.0, lease_seconds=600) is not None
        started = time.monotonic()
        with pytest.raises(LeaseLost, match="'k'"):
            claims.sleep(30)  # a 429's Retry-After, say
        assert time.monotonic() - started < 5
        assert claim.lost
        assert not claims.held()
        with pytest.raises(LeaseLost):
            claims.check()
    assert claims.current() is None
    assert claims.held()  # outside a step nothing is fenced
    assert store.items()[0].owner == "w2"


def test_the_staging_stops_a_transfer_at_its_next_chunk_once_the_lease_is_lost() -> None:
    lost = threading.Event()

    def check() -> None:
        if lost.is_set():
            raise LeaseLost("sample:x")

    with SampleStaging(1 << 30, check=check) as staging:
        staging.write(b"a" * 1000)
        reader = staging.reader()
        assert reader.read(10) == b"a" * 10
        assert reader.seek(0, 2) == 1000
        reader.seek(0)
        lost.set()
        with pytest.raises(LeaseLost):
            staging.write(b"more")
        with pytest.raises(LeaseLost):
            reader.read()
    assert staging.size == 1000


# -- the engine ------------------------------------------------------------------------------------


class _StallingDefender(FakeDefender):
    """The first comment is written, then the process stalls past the lease and another worker
    claims the comment's work item (left claimed, as if that worker were still at it)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.ctx: Context | None = None
        self.taken: WorkItem | None = None

    def add_comment(self, alert_id: str, text: str) -> None:
        super().add_comment(alert_id, text)
        if self.taken is not None:
            return
        assert self.ctx is not None
        claim = self.ctx.claims.current()
        assert claim is not None
        self.clock.now += self.ctx.config.step_lease + 1
        store = self.ctx.store
        others = []
        while (taken := store.claim("w2", now=self.clock.now, lease_seconds=600)) is not None:
            if taken.key == claim.item.key:
                self.taken = taken
                break
            others.append(taken)
        for other in others:
            store.reschedule(other, other.due_at)
        assert self.taken is not None


def test_a_step_that_lost_its_lease_commits_nothing_and_its_successor_finds_its_comment() -> None:
    clock = FakeClock(1_800_000_000.0)
    defender = _StallingDefender(clock)
    store = MemoryStore(clock=clock)
    engine = Application(Context(store, defender, FakeSandbox(), PipelineConfig(), Clock(source=clock)))
    defender.ctx = engine.ctx
    defender.add_machine(M1)
    defender.files[(M1, "C:\\Users\\u\\x.exe")] = PAYLOAD
    alert = file_alert("a1", M1, PAYLOAD)
    defender.add_alert(alert)
    engine.receive(alert.id, source="test")
    while defender.taken is None:
        if not engine.run_next("w1"):
            due = store.next_due()
            assert due is not None
            clock.now = max(clock.now, due)
    taken = defender.taken
    [link] = engine.ctx.links.list()
    assert link.record.state == LinkState.WRITING  # the step's last unit of work was refused
    held = [(i.owner, i.token, i.lease_until) for i in store.items() if i.key == taken.key]
    assert held == [("w2", taken.token, taken.lease_until)]  # neither completed nor rescheduled
    lines = [(h.step, h.outcome) for h in store.history(taken.key)]
    assert lines == [(WorkKind.COMMENT.value, "lease lost")]  # one line, no retry
    assert [i.failures for i in store.items() if i.key == taken.key] == [0]  # not counted as a failure

    engine.run_claimed(taken)  # the new owner: the comment is there already
    assert len(defender.comments("a1")) == 1
    [link] = engine.ctx.links.list()
    assert link.record.state == LinkState.COMMENTED
    history = [h.outcome for h in store.history("alert:a1") if h.step == "write-back"]
    assert history == ["already commented"]
    assert all(i.key != taken.key for i in store.items())
