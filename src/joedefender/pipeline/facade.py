"""The connector as hosts see it: one application facade, built by `joedefender.bootstrap`.

Hosts (the CLI, the standalone service, the Azure Functions app) import bootstrap and this
module, never the pipeline's inner modules nor an adapter (an import-linter contract in
pyproject.toml says so). What they do goes through `Application`: take an alert in, run due
work, read the status, sweep for stranded work, poll Defender, relay a store's outbox. The few
types a host names travel with it (`__all__`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from joedefender.domain.alerts import Alert
from joedefender.domain.errors import QuotaExhausted
from joedefender.domain.indicators import ExistingIndicator
from joedefender.domain.keys import WorkKind
from joedefender.pipeline.alerts.intake import (
    Accepted,
    Intake,
    InvalidAlertError,
    validate_alert_id,
    validate_machine_id,
)
from joedefender.pipeline.alerts.polling import poll_once
from joedefender.pipeline.alerts.triage import TriageWork
from joedefender.pipeline.clock import Clock
from joedefender.pipeline.collection import registry
from joedefender.pipeline.collection.actions import ActionRunner
from joedefender.pipeline.collection.cleanup import CleanupWork
from joedefender.pipeline.collection.strategy import CollectionStrategy
from joedefender.pipeline.context import Context
from joedefender.pipeline.dimensions import DIMENSIONS, bound, current
from joedefender.pipeline.engine import Engine, WorkHandler
from joedefender.pipeline.overview import AlertView, Hour, Listed, Overview, OverviewReader, Parked, SampleView
from joedefender.pipeline.ports import HistoryEntry, Store, StoreError, WorkItem
from joedefender.pipeline.quota import alerts_waiting_for_quota, parked_until
from joedefender.pipeline.records import Records
from joedefender.pipeline.sample.job import SampleWork
from joedefender.pipeline.sweep import sweep
from joedefender.pipeline.verdicts.classify import ClassifyWork
from joedefender.pipeline.verdicts.incidents import IncidentWork
from joedefender.pipeline.verdicts.indicators import IndicatorsWork, withdraw
from joedefender.pipeline.verdicts.writeback import WriteBack

__all__ = [
    "DIMENSIONS",
    "Accepted",
    "AlertView",
    "Application",
    "Clock",
    "HistoryEntry",
    "Hour",
    "InvalidAlertError",
    "Listed",
    "Overview",
    "Parked",
    "Records",
    "SampleView",
    "Status",
    "Store",
    "StoreError",
    "WorkItem",
    "bound",
    "current",
    "validate_alert_id",
    "validate_machine_id",
]

# Sends what a store's outbox holds (the Azure store's queue messages); how many were sent.
Relay = Callable[[], int]


class Status:
    """What `status` and the operator's page show, from the store alone: the records, whether
    submissions are parked, and the page's bounded reads (`overview`, `jobs`, `alert`)."""

    def __init__(self, store: Store, clock: Clock, *, live_response_limit: int | None = None) -> None:
        """`live_response_limit`: MaxLiveResponseSessions when the settings are known (the
        connector's); the page shows the sessions in use against it."""
        self.records = Records(store)
        self._store = store
        self._clock = clock
        self._reader = OverviewReader(store, live_response_limit=live_response_limit)

    def now(self) -> float:
        return self._clock.now()

    def overview(self) -> Overview:
        """Counts per state and per hour of the last day, what is parked and why, budgets in use."""
        return self._reader.overview(self._clock.now())

    def jobs(self, state: str | None = None) -> Listed:
        """The most recently updated sample jobs, of one state if given."""
        return self._reader.jobs(state=state)

    def alert(self, alert_id: str) -> AlertView | None:
        """One alert with its history and its samples' step histories; None when unknown."""
        return self._reader.alert(alert_id)

    def parked_until(self) -> float | None:
        """When submissions parked for Joe's quota may go again; None when none are parked."""
        return parked_until(self._store, self._clock.now())

    def pending(self) -> int:
        """How many work items are queued."""
        return self._store.pending()

    def alerts_waiting_for_quota(self) -> list[str]:
        """The alerts whose samples wait for Joe's quota to reset."""
        return alerts_waiting_for_quota(self.records)


class Application:
    def __init__(
        self, ctx: Context, *, relay: Relay | None = None, strategies: Sequence[CollectionStrategy] | None = None
    ) -> None:
        """`strategies`: the collection strategies, by default those `registry.STRATEGIES` lists now."""
        self.ctx = ctx  # the records and ports, for tests and benchmarks; hosts use the methods
        self._relay = relay
        self._intake = Intake(ctx)
        self.status = Status(ctx.store, ctx.clock, live_response_limit=ctx.config.max_live_response_sessions)
        self.engine = Engine(ctx, self._handlers(ctx, registry.STRATEGIES if strategies is None else strategies))

    def _handlers(self, ctx: Context, strategies: Sequence[CollectionStrategy]) -> Mapping[WorkKind, WorkHandler]:
        runner = ActionRunner(ctx)  # one per process: it paces every session's polls together
        return {
            WorkKind.TRIAGE: TriageWork(ctx, self._intake.reads),
            WorkKind.SAMPLE: SampleWork(ctx, runner, strategies),
            WorkKind.COMMENT: WriteBack(ctx),
            WorkKind.CLEANUP: CleanupWork(ctx, runner, strategies),
            WorkKind.INDICATORS: IndicatorsWork(ctx),
            WorkKind.CLASSIFY: ClassifyWork(ctx),
            WorkKind.INCIDENT: IncidentWork(ctx),
        }

    # -- intake ---------------------------------------------------------------------------------

    def receive(
        self,
        alert_id: str,
        *,
        machine_id: str | None = None,
        source: str = "cli",
        updated_at: datetime | None = None,
        alert: Alert | None = None,
    ) -> Accepted:
        """Record the alert and queue its triage (`InvalidAlertError` for a malformed id)."""
        return self._intake.receive(alert_id, machine_id=machine_id, source=source, updated_at=updated_at, alert=alert)

    def poll(self, now: datetime, lookback: timedelta) -> int:
        """One poll of Defender over [watermark, now) (`now` on Defender's clock); new alerts taken in."""
        return poll_once(self.ctx, self._intake, now=now, lookback=lookback)

    # -- processing -----------------------------------------------------------------------------

    def run_next(self, owner: str) -> bool:
        """Claim and run one due work item; False when nothing is due."""
        return self.engine.run_next(owner)

    def run_claimed(self, item: WorkItem) -> None:
        """Run a work item the host claimed itself (push mode: a queue message)."""
        self.engine.run_claimed(item)

    def next_due(self) -> float | None:
        return self.ctx.store.next_due()

    def pending(self) -> int:
        return self.ctx.store.pending()

    def now(self) -> float:
        return self.ctx.now()

    @property
    def step_lease(self) -> float:
        """Real seconds a work item is leased for when its step starts."""
        return self.ctx.step_lease

    @property
    def configuration_problem(self) -> Exception | None:
        """The last error every work item would meet (a refused key): wait, fix the settings."""
        return self.engine.configuration_problem

    @property
    def quota_exhausted(self) -> QuotaExhausted | None:
        return self.engine.quota_exhausted

    # -- upkeep ---------------------------------------------------------------------------------

    def sweep(self, grace: float) -> list[str]:
        """Queue again unfinished work whose item is missing or stuck `grace` nominal seconds."""
        return sweep(self.ctx, now=self.ctx.now(), grace=self.ctx.clock.real(grace))

    def relay(self) -> int:
        """Send what a crash left in the store's outbox (nothing on a store without one)."""
        return self._relay() if self._relay is not None else 0

    # -- verdict actions ------------------------------------------------------------------------

    def own_indicators(self) -> list[ExistingIndicator]:
        """The indicators Defender shows as pushed by this connector."""
        return [item for item in self.ctx.defender.own_indicators() if item.ours]

    def withdraw_indicators(self, sample_key: str | None) -> list[ExistingIndicator]:
        """Delete the connector's own indicators, of one sample or (None) all of them."""
        return withdraw(self.ctx, sample_key)
