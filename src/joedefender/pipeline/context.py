"""What every step works with: the store's records, the two ports, the config and the time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from joedefender.pipeline.config import PipelineConfig
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

    def __post_init__(self) -> None:
        Records.__init__(self, self.store)

    def changes(self) -> Changes:
        """A new unit of work for one step's writes."""
        return Changes(self.store.unit_of_work(), self.now)

    def record(self, subject: str, step: str, outcome: str, detail: str = "") -> None:
        """A history line on its own, for what happens outside any record change."""
        with self.changes() as changes:
            changes.record(subject, step, outcome, detail)
