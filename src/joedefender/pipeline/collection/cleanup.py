"""Endpoint cleanup after an attempt whose strategy leaves something behind, whatever its outcome.

The collect script leaves only a defanged copy in a SYSTEM-only folder (GetFile needs it after
the script ends, and a RunScript may not follow a GetFile in one action), so a second action
runs the strategy's cleanup commands. If that never gets through, the script's own sweep removes
folders older than a day on its next run. A cleanup is idempotent, so one that a crash may
have launched already is simply launched again, with no look for it first.
"""

from __future__ import annotations

from collections.abc import Sequence

from joedefender.domain.jobs import EndpointCleanup
from joedefender.domain.keys import cleanup_key, cleanup_work_key, endpoint_subject
from joedefender.domain.liveresponse import ActionStatus
from joedefender.domain.markers import mark
from joedefender.domain.reasons import Cause
from joedefender.pipeline.collection.actions import ActionRunner, Refused
from joedefender.pipeline.collection.registry import by_name
from joedefender.pipeline.collection.strategy import CollectionStrategy
from joedefender.pipeline.context import DONE, Context, Outcome
from joedefender.pipeline.records import Changes, Versioned

_MAX_TRIES = 5


def schedule_cleanup(ctx: Context, changes: Changes, machine_id: str, job_id: str, strategy: str) -> None:
    """Add the cleanup to `changes` (once: a cleanup already scheduled stays as it is)."""
    key = cleanup_key(machine_id, job_id)
    if ctx.cleanups.get(key) is None:
        cleanup = EndpointCleanup(machine_id=machine_id, job_id=job_id, strategy=strategy, created_at=ctx.now())
        changes.create(ctx.cleanups, key, cleanup)
        changes.enqueue(cleanup_work_key(key))


class CleanupWork:
    """`cleanup:<machine>|<job>`: run the strategy's cleanup action until it succeeds, at most
    `_MAX_TRIES` times."""

    def __init__(self, ctx: Context, runner: ActionRunner, strategies: Sequence[CollectionStrategy]) -> None:
        self._ctx = ctx
        self._runner = runner
        self._strategies = strategies

    def run(self, key: str) -> Outcome:
        ctx = self._ctx
        stored = ctx.cleanups.get(key)
        if stored is None or stored.record.done:
            return DONE
        record = stored.record
        if record.action_id is not None:
            action = self._runner.look(record.action_id)
            if action is None or action.status.running:
                return ctx.later(ctx.config.action_poll)
            self._runner.release(record.machine_id, _owner(record))
            if action.status == ActionStatus.SUCCEEDED:
                return self._end(stored, "cleaned", f"job folder {record.job_id} removed")
            record.action_id = None
            record.tries += 1
        strategy = by_name(record.strategy, self._strategies)
        if record.tries >= _MAX_TRIES or strategy is None:
            return self._end(stored, "gave up", f"job folder {record.job_id}: the script's sweep will remove it")
        return self._launch(stored, strategy)

    def give_up(self, key: str, cause: Cause) -> None:
        """Nothing to end: the script's own sweep removes what a cleanup never did."""

    def _launch(self, stored: Versioned[EndpointCleanup], strategy: CollectionStrategy) -> Outcome:
        ctx, record = self._ctx, stored.record
        if not self._runner.hold(record.machine_id, _owner(record), ctx.config.action_timeout):
            return self._save(stored, ctx.config.busy_retry)
        comment = f"{mark(record.job_id)}: remove the collection folder"
        action = self._runner.launch(record.machine_id, strategy.cleanup(record.job_id), comment)
        if isinstance(action, Refused):
            self._runner.release(record.machine_id, _owner(record))
            return self._save(stored, ctx.config.busy_retry)
        record.action_id = action.id
        return self._save(stored, ctx.config.action_poll)

    def _save(self, stored: Versioned[EndpointCleanup], nominal: float) -> Outcome:
        with self._ctx.changes() as changes:
            changes.save(stored)
        return self._ctx.later(nominal)

    def _end(self, stored: Versioned[EndpointCleanup], outcome: str, detail: str) -> Outcome:
        stored.record.done = True
        with self._ctx.changes() as changes:
            changes.save(stored)
            changes.record(endpoint_subject(stored.record.machine_id), "cleanup", outcome, detail)
        return DONE


def _owner(record: EndpointCleanup) -> str:
    return f"cleanup:{record.job_id}"
