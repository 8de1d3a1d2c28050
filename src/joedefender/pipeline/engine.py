"""The engine: claims due work items from the queue and runs the step each one names.

A step returns when to look again; errors that pass (throttling, outages, a lost race) are
retried with backoff; a step that keeps failing is given up with a reason the analyst will see.
The engine decides by the core's error types only: every adapter maps its own errors into them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from joedefender.domain.errors import Misconfigured, NotAllowed, QuotaExhausted, Rejected, Throttled, Transient
from joedefender.domain.jobs import AlertState
from joedefender.domain.keys import TENANT_BATCH, WorkKey, WorkKind, alert_subject
from joedefender.domain.reasons import Cause, Reason
from joedefender.pipeline.classify import ClassifyStep
from joedefender.pipeline.cleanup import CleanupStep
from joedefender.pipeline.context import Context, Outcome, again
from joedefender.pipeline.indicators import BatchStep, ChooseStep
from joedefender.pipeline.intake import Intake
from joedefender.pipeline.lease import Heartbeat
from joedefender.pipeline.ports import LeaseLost, StateStore, VersionConflict, WorkItem
from joedefender.pipeline.quota import park
from joedefender.pipeline.sample_step import SampleStep
from joedefender.pipeline.triage_step import TriageStep
from joedefender.pipeline.writeback import WriteBackStep

logger = logging.getLogger("joedefender.engine")

_CONFIGURATION = (Misconfigured, NotAllowed)


class Engine:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.intake = Intake(ctx)
        self._samples = SampleStep(ctx)
        self._errors = _ErrorCounts(ctx.store)
        # The last error that every item would meet (a rejected key, an exhausted quota): a host
        # that waits for the queue to drain (`process`) stops on it instead of waiting for ever.
        self.configuration_problem: Exception | None = None
        self.quota_exhausted: QuotaExhausted | None = None
        self._steps: dict[WorkKind, Callable[[str], Outcome]] = {
            WorkKind.TRIAGE: TriageStep(ctx),
            WorkKind.SAMPLE: self._samples,
            WorkKind.COMMENT: WriteBackStep(ctx),
            WorkKind.CLEANUP: CleanupStep(ctx),
            WorkKind.INDICATORS: self._indicators,
            WorkKind.CLASSIFY: ClassifyStep(ctx),
        }
        self._choose = ChooseStep(ctx)
        self._batch = BatchStep(ctx)
        self._heartbeat = Heartbeat(ctx.store, now=ctx.now, lease_seconds=lambda: ctx.config.step_lease)

    def _indicators(self, subject: str) -> Outcome:
        return self._batch(subject) if subject == TENANT_BATCH else self._choose(subject)

    def run_next(self, owner: str) -> bool:
        """Claim and run one due item; False when nothing is due."""
        ctx = self.ctx
        item = ctx.store.claim(owner, ctx.now(), ctx.config.step_lease)
        if item is None:
            return False
        self.run_claimed(item)
        return True

    def run_claimed(self, item: WorkItem) -> None:
        """Run the step a claimed item names, its lease renewed while it runs, then complete or
        reschedule the item; if the lease was lost meanwhile, leave the item to its new owner."""
        ctx = self.ctx
        with self._heartbeat.hold(item) as claim, ctx.claims.running(claim):
            outcome = self._run(item)
        if outcome is None:
            return
        if outcome.done:
            ctx.store.complete(claim.item)
        else:
            assert outcome.delay is not None
            ctx.store.reschedule(claim.item, ctx.now() + outcome.delay)

    def _run(self, item: WorkItem) -> Outcome | None:
        """The step's outcome; None when the lease was lost (the step stopped, or committed nothing)."""
        try:
            return self._outcome(item)
        except LeaseLost:
            # Someone else owns the item now and runs the step again: no retry, no failure count.
            logger.info("%s: the lease was lost while the step ran; its new owner carries on", item.key)
            work = WorkKey.parse(item.key)
            step = work.kind.value if work is not None else "engine"
            self.ctx.store.append_history(item.key, step, "lease lost", "another worker took the step over")
            return None

    def _outcome(self, item: WorkItem) -> Outcome:
        work = WorkKey.parse(item.key)
        if work is None:
            logger.error("dropping work item of unknown kind: %s", item.key)
            return Outcome()
        config = self.ctx.config
        try:
            outcome = self._steps[work.kind](work.subject)
        except LeaseLost:
            raise
        except VersionConflict:
            return again(config.scaled(1))
        except Throttled as exc:
            return again(exc.retry_after or config.backoff(self._errors.failed(item.key)))
        except Transient as exc:
            return self._retry(item, work, f"{type(exc).__name__}: {exc}")
        except Rejected as exc:
            # The service refused this request as invalid: the same request will be refused again.
            service = {"joe": "Joe Sandbox", "defender": "Defender"}.get(exc.service, exc.service or "the service")
            cause = Cause(reason=Reason.REJECTED, detail=f"{service}: {exc.message}")
            self.ctx.record(item.key, work.kind.value, "refused", cause.text)
            return self._give_up(work, cause)
        except QuotaExhausted as exc:
            until, started = park(self.ctx, exc.message)
            when = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%d %H:%M UTC")
            if started:  # said once, however many jobs park
                logger.warning("Joe Sandbox's submission quota is used up: submissions wait until %s", when)
            self.ctx.record(work.subject, work.kind.value, "parked", f"Joe Sandbox quota used up; until {when}")
            self.quota_exhausted = exc
            return again(until - self.ctx.now())
        except _CONFIGURATION as exc:
            # Every item would fail the same way: wait long, say it loudly, do not comment.
            self.ctx.record(item.key, work.kind.value, "configuration problem", f"{type(exc).__name__}: {exc}")
            logger.error("configuration problem (run `joedefender check`): %s", exc)
            self.configuration_problem = exc
            return again(config.backoff(10))
        except Exception as exc:
            logger.exception("step %s failed", item.key)
            return self._retry(item, work, f"{type(exc).__name__}: {exc}")
        self._errors.succeeded(item.key)
        return outcome

    def _retry(self, item: WorkItem, work: WorkKey, detail: str) -> Outcome:
        ctx = self.ctx
        failures = self._errors.failed(item.key)
        if failures < ctx.config.max_step_attempts:
            ctx.record(item.key, work.kind.value, "will retry", detail)
            return again(ctx.config.backoff(failures))
        self._errors.succeeded(item.key)
        cause = Cause(reason=Reason.GAVE_UP, detail=f"{failures} failed tries; last error: {detail}")
        ctx.record(item.key, work.kind.value, "gave up", cause.text)
        return self._give_up(work, cause)

    def _give_up(self, work: WorkKey, cause: Cause) -> Outcome:
        """End what the work item was for with `cause`: a sample job fails (and its alerts get
        the failure comment), an alert's triage fails; other items are dropped."""
        ctx = self.ctx
        if work.kind == WorkKind.SAMPLE:
            stored = ctx.jobs.get(work.subject)
            if stored is not None and not stored.record.state.final:
                return self._samples.fail(stored, cause)
        elif work.kind == WorkKind.INDICATORS and work.subject != TENANT_BATCH:
            self._choose.give_up(work.subject, cause.text)
        elif work.kind == WorkKind.TRIAGE:
            alert = ctx.alerts.get(work.subject)
            if alert is not None:
                alert.record.state, alert.record.cause = AlertState.FAILED, cause
                with ctx.changes() as changes:
                    changes.save(alert)
                    changes.record(alert_subject(work.subject), "triage", "failed", cause.text)
        return Outcome()


class _ErrorCounts:
    """Consecutive failures per work item (the queue's own count includes every poll)."""

    _KIND = "errors"

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def failed(self, key: str) -> int:
        for _ in range(5):
            doc = self._store.get(self._KIND, key)
            if doc is None:
                if self._store.create(self._KIND, key, {"count": 1}) is not None:
                    return 1
                continue
            count = int(doc.data.get("count", 0)) + 1
            try:
                self._store.update(doc, {"count": count})
            except VersionConflict:
                continue
            return count
        return 1

    def succeeded(self, key: str) -> None:
        doc = self._store.get(self._KIND, key)
        if doc is not None and doc.data.get("count"):
            with contextlib.suppress(VersionConflict):
                self._store.update(doc, {"count": 0})
