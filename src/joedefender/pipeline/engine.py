"""The engine: claims due work items from the queue and runs the step each one names.

Work item keys are `<kind>:<subject>`: `triage:<alert id>`, `sample:<job key>`,
`comment:<link key>`, `cleanup:<machine>|<job id>`. A step returns when to look again; errors
that pass (throttling, outages, a lost race) are retried with backoff; a step that keeps failing
is given up with a reason the analyst will see.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from joedefender.clients.joe.errors import JoeAuthError, JoeQuotaError, JoeUnavailableError
from joedefender.clients.mde.errors import (
    DefenderAuthError,
    DefenderServerError,
    DefenderTransportError,
    ForbiddenError,
    ThrottledError,
)
from joedefender.domain.jobs import AlertState
from joedefender.pipeline.cleanup import CleanupStep
from joedefender.pipeline.context import Context, Outcome, again
from joedefender.pipeline.intake import Intake
from joedefender.pipeline.sample_step import SampleStep
from joedefender.pipeline.triage_step import TriageStep
from joedefender.pipeline.writeback import WriteBackStep
from joedefender.stores.base import StateStore, VersionConflict, WorkItem

logger = logging.getLogger("joedefender.engine")

_PASSING = (DefenderServerError, DefenderTransportError, JoeUnavailableError)
_CONFIGURATION = (DefenderAuthError, ForbiddenError, JoeAuthError, JoeQuotaError)


class Engine:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.intake = Intake(ctx)
        self._samples = SampleStep(ctx)
        self._errors = _ErrorCounts(ctx.store)
        self._steps: dict[str, Callable[[str], Outcome]] = {
            "triage": TriageStep(ctx),
            "sample": self._samples,
            "comment": WriteBackStep(ctx),
            "cleanup": CleanupStep(ctx),
        }

    def run_next(self, owner: str) -> bool:
        """Claim and run one due item; False when nothing is due."""
        ctx = self.ctx
        item = ctx.store.claim(owner, ctx.now(), ctx.config.step_lease)
        if item is None:
            return False
        outcome = self._run(item)
        if outcome.done:
            ctx.store.complete(item)
        else:
            assert outcome.delay is not None
            ctx.store.reschedule(item, ctx.now() + outcome.delay)
        return True

    def _run(self, item: WorkItem) -> Outcome:
        kind, _, subject = item.key.partition(":")
        step = self._steps.get(kind)
        if step is None:
            logger.error("dropping work item of unknown kind: %s", item.key)
            return Outcome()
        config = self.ctx.config
        try:
            outcome = step(subject)
        except VersionConflict:
            return again(config.scaled(1))
        except ThrottledError as exc:
            return again(exc.retry_after or config.backoff(self._errors.failed(item.key)))
        except _PASSING as exc:
            return self._retry(item, kind, subject, f"{type(exc).__name__}: {exc}")
        except _CONFIGURATION as exc:
            # Every item would fail the same way: wait long, say it loudly, do not comment.
            self.ctx.record(item.key, kind, "configuration problem", f"{type(exc).__name__}: {exc}")
            logger.error("configuration problem (run `joedefender check`): %s", exc)
            return again(config.backoff(10))
        except Exception as exc:
            logger.exception("step %s failed", item.key)
            return self._retry(item, kind, subject, f"{type(exc).__name__}: {exc}")
        self._errors.succeeded(item.key)
        return outcome

    def _retry(self, item: WorkItem, kind: str, subject: str, detail: str) -> Outcome:
        ctx = self.ctx
        failures = self._errors.failed(item.key)
        if failures < ctx.config.max_step_attempts:
            ctx.record(item.key, kind, "will retry", detail)
            return again(ctx.config.backoff(failures))
        self._errors.succeeded(item.key)
        reason = f"gave up after {failures} failed tries; last error: {detail}"
        ctx.record(item.key, kind, "gave up", reason)
        if kind == "sample":
            stored = ctx.jobs.get(subject)
            if stored is not None and not stored.record.state.final:
                return self._samples.fail(stored, reason)
        elif kind == "triage":
            alert = ctx.alerts.get(subject)
            if alert is not None:
                alert.record.state, alert.record.reason = AlertState.FAILED, reason
                ctx.alerts.save(alert)
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
