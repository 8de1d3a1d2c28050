"""What every step works with: the store's records, the ports, the config and the clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from joedefender.pipeline.clock import Clock
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.lease import Claims
from joedefender.pipeline.ports import DefenderPort, IncidentPort, SandboxPort, Store
from joedefender.pipeline.records import Changes, Records

_MIN_LEASE = 2.0  # real seconds: a step's lease, however fast the clock runs


@dataclass(frozen=True)
class Outcome:
    """What a step says about its work item: done, or look again in `delay` real seconds."""

    delay: float | None = None

    @property
    def done(self) -> bool:
        return self.delay is None


DONE = Outcome()


def again(delay: float) -> Outcome:
    """Look again in `delay` real seconds (a difference of timestamps; see `Context.later`)."""
    return Outcome(max(0.0, delay))


@dataclass
class Context(Records):
    store: Store
    defender: DefenderPort
    sandbox: SandboxPort
    config: PipelineConfig
    clock: Clock = field(default_factory=Clock)
    # The claim each thread's step runs under; bootstrap shares it with the adapters' waits.
    claims: Claims = field(default_factory=Claims)
    # Defender XDR incidents, when verdicts go on them (`config.incident_verdicts`).
    incidents: IncidentPort | None = None

    def __post_init__(self) -> None:
        Records.__init__(self, self.store)

    def now(self) -> float:
        return self.clock.now()

    def later(self, nominal: float) -> Outcome:
        """Look again in `nominal` seconds."""
        return again(self.clock.real(nominal))

    @property
    def step_lease(self) -> float:
        """A work item's lease while its step runs, in real seconds."""
        return max(self.clock.real(self.config.step_lease), _MIN_LEASE)

    def changes(self) -> Changes:
        """A new unit of work for one step's writes; under the engine, fenced with the step's
        claim, so a step that lost its lease commits nothing (`LeaseLost`)."""
        uow = self.store.unit_of_work()
        claim = self.claims.current()
        if claim is not None:
            uow.fence(claim.item)
        return Changes(uow, self.clock)

    def check_lease(self) -> None:
        """Raise `LeaseLost` once the running step is known to have lost its lease: it should
        stop before its next side effect."""
        self.claims.check()

    def record(self, subject: str, step: str, outcome: str, detail: str = "") -> None:
        """A history line on its own, for what happens outside any record change."""
        with self.changes() as changes:
            changes.record(subject, step, outcome, detail)
