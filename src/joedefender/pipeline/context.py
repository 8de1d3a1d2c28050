"""What every step works with: the store's records, the two ports, the config and the time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.lease import Claims
from joedefender.pipeline.ports import DefenderPort, SandboxPort, Store
from joedefender.pipeline.records import Changes, Records


@dataclass(frozen=True)
class Outcome:
    """What a step says about its work item: done, or look again in `delay` real seconds."""

    delay: float | None = None

    @property
    def done(self) -> bool:
        return self.delay is None


DONE = Outcome()


def again(delay: float) -> Outcome:
    return Outcome(max(0.0, delay))


@dataclass
class Context(Records):
    store: Store
    defender: DefenderPort
    sandbox: SandboxPort
    config: PipelineConfig
    now: Callable[[], float] = field(default=time.time)
    # The claim each thread's step runs under; bootstrap shares it with the adapters' waits.
    claims: Claims = field(default_factory=Claims)

    def __post_init__(self) -> None:
        Records.__init__(self, self.store)

    def changes(self) -> Changes:
        """A new unit of work for one step's writes; under the engine, fenced with the step's
        claim, so a step that lost its lease commits nothing (`LeaseLost`)."""
        uow = self.store.unit_of_work()
        claim = self.claims.current()
        if claim is not None:
            uow.fence(claim.item)
        return Changes(uow, self.now)

    def lease_held(self) -> bool:
        """False once the running step is known to have lost its work item's lease: it should
        stop before its next side effect (`check_lease` raises `LeaseLost` then)."""
        return self.claims.held()

    def check_lease(self) -> None:
        self.claims.check()

    def record(self, subject: str, step: str, outcome: str, detail: str = "") -> None:
        """A history line on its own, for what happens outside any record change."""
        with self.changes() as changes:
            changes.record(subject, step, outcome, detail)
