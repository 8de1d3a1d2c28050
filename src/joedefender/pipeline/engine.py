"""The engine: claims due work items from the queue and runs the handler of each one's kind.

A handler returns when to look again; errors that pass (throttling, outages, a lost race) are
retried with backoff; a handler that keeps failing is given up (`WorkHandler.give_up`) with a
reason the analyst will see. The engine decides by the core's error types only: every adapter
maps its own errors into them. It knows no handler by name: the facade gives it one per kind.
While a step runs, its work item's lease is renewed (`joedefender.pipeline.lease`); a step that
lost it anyway stops with `LeaseLost` and the item is left to the worker that owns it now.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from joedefender.domain.errors import Misconfigured, NotAllowed, QuotaExhausted, Rejected, Throttled, Transient
from joedefender.domain.keys import WorkKey, WorkKind
from joedefender.domain.reasons import Cause, Reason
from joedefender.pipeline.context import DONE, Context, Outcome, again
from joedefender.pipeline.lease import Heartbeat
from joedefender.pipeline.ports import LeaseLost, VersionConflict, WorkItem
from joedefender.pipeline.quota import park

logger = logging.getLogger("joedefender.engine")

_CONFIGURATION = (Misconfigured, NotAllowed)
_SERVICES = {"joe": "Joe Sandbox", "defender": "Defender"}


class WorkHandler(Protocol):
    """What runs the work items of one kind; `subject` is what the work key names."""

    def run(self, subject: str) -> Outcome:
        """One bounded step: done, or when to look again."""
        ...

    def give_up(self, subject: str, cause: Cause) -> None:
        """End what the item was for: its tries are used up, or the service refused it for good."""
        ...


class Engine:
    def __init__(self, ctx: Context, handlers: Mapping[WorkKind, WorkHandler]) -> None:
        self.ctx = ctx
        self._handlers = handlers
        # The last error that every item would meet (a rejected key, an exhausted quota): a host
        # that waits for the queue to drain (`process`) stops on it instead of waiting for ever.
        self.configuration_problem: Exception | None = None
        self.quota_exhausted: QuotaExhausted | None = None
        self._heartbeat = Heartbeat(ctx.store, now=ctx.now, lease_seconds=lambda: ctx.step_lease)

    def run_next(self, owner: str) -> bool:
        """Claim and run one due item; False when nothing is due."""
        ctx = self.ctx
        item = ctx.store.claim(owner, ctx.now(), ctx.step_lease)
        if item is None:
            return False
        self.run_claimed(item)
        return True

    def run_claimed(self, item: WorkItem) -> None:
        """Run the handler a claimed item names, its lease renewed while it runs, then complete or
        reschedule the item (with its count of consecutive failed steps, which lives on the item);
        if the lease was lost meanwhile, leave the item to its new owner."""
        ctx = self.ctx
        with self._heartbeat.hold(item) as claim, ctx.claims.running(claim):
            ran = self._run(item)
        if ran is None:
            return
        outcome, failures = ran
        if outcome.done:
            ctx.store.complete(claim.item)
        else:
            assert outcome.delay is not None
            ctx.store.reschedule(claim.item, ctx.now() + outcome.delay, failures)

    def _run(self, item: WorkItem) -> Ran | None:
        """The step's outcome and the item's failures; None when the lease was lost (the step
        stopped, or committed nothing)."""
        try:
            return self._outcome(item)
        except LeaseLost:
            # Someone else owns the item now and runs the step again: no retry, no failure count.
            logger.info("%s: the lease was lost while the step ran; its new owner carries on", item.key)
            work = WorkKey.parse(item.key)
            step = work.kind.value if work is not None else "engine"
            self.ctx.store.append_history(item.key, step, "lease lost", "another worker took the step over")
            return None

    def _outcome(self, item: WorkItem) -> Ran:
        work = WorkKey.parse(item.key)
        handler = self._handlers.get(work.kind) if work is not None else None
        if work is None or handler is None:
            logger.error("dropping work item of unknown kind: %s", item.key)
            return DONE, 0
        try:
            return handler.run(work.subject), 0
        except LeaseLost:
            raise
        except Exception as exc:
            return self._failed(item, work, exc)

    def _failed(self, item: WorkItem, work: WorkKey, exc: Exception) -> Ran:
        """What the engine does about a step that raised, by the core's error type; the item's
        consecutive failures as they stand after it (a lost race, a throttle or a park is none)."""
        ctx, config, failures = self.ctx, self.ctx.config, item.failures
        if isinstance(exc, VersionConflict):
            return ctx.later(1), failures
        if isinstance(exc, Throttled):
            if exc.retry_after:
                return again(exc.retry_after), failures
            return ctx.later(config.backoff(failures + 1)), failures + 1
        if isinstance(exc, Transient):
            return self._retry(item, work, f"{type(exc).__name__}: {exc}")
        if isinstance(exc, Rejected):
            # The service refused this request as invalid: the same request will be refused again.
            service = _SERVICES.get(exc.service, exc.service or "the service")
            cause = Cause(reason=Reason.REJECTED, detail=f"{service}: {exc.message}")
            ctx.record(item.key, work.kind.value, "refused", cause.text)
            return self._give_up(work, cause), 0
        if isinstance(exc, QuotaExhausted):
            return self._park(work, exc), failures
        if isinstance(exc, _CONFIGURATION):
            # Every item would fail the same way: wait long, say it loudly, do not comment.
            ctx.record(item.key, work.kind.value, "configuration problem", f"{type(exc).__name__}: {exc}")
            logger.error("configuration problem (run `joedefender check`): %s", exc)
            self.configuration_problem = exc
            return ctx.later(config.backoff(10)), failures
        logger.exception("step %s failed", item.key, exc_info=exc)
        return self._retry(item, work, f"{type(exc).__name__}: {exc}")

    def _park(self, work: WorkKey, exc: QuotaExhausted) -> Outcome:
        until, started = park(self.ctx, exc.message)
        when = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%d %H:%M UTC")
        if started:  # said once, however many jobs park
            logger.warning("Joe Sandbox's submission quota is used up: submissions wait until %s", when)
        self.ctx.record(work.subject, work.kind.value, "parked", f"Joe Sandbox quota used up; until {when}")
        self.quota_exhausted = exc
        return again(until - self.ctx.now())

    def _retry(self, item: WorkItem, work: WorkKey, detail: str) -> Ran:
        ctx = self.ctx
        failures = item.failures + 1
        if failures < ctx.config.max_step_attempts:
            ctx.record(item.key, work.kind.value, "will retry", detail)
            return ctx.later(ctx.config.backoff(failures)), failures
        cause = Cause(reason=Reason.GAVE_UP, detail=f"{failures} failed tries; last error: {detail}")
        ctx.record(item.key, work.kind.value, "gave up", cause.text)
        return self._give_up(work, cause), 0

    def _give_up(self, work: WorkKey, cause: Cause) -> Outcome:
        self._handlers[work.kind].give_up(work.subject, cause)
        return DONE


Ran = tuple[Outcome, int]  # a step's outcome, and its item's consecutive failed steps after it
