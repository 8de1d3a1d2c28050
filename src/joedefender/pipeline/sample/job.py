"""`sample:<key>`: one step of a sample job, by the handler its state names.

`SampleWork.handlers` sits beside the domain's transition table (`domain.jobs.TRANSITIONS`): what
runs in each state. A step runs one handler and carries out what its result asks for in the same step
(the next state's handler, the submission of a staged file, a fresh fetch of a collected one),
so no handler calls another. While Joe's submission quota is used up, no job starts a
collection or a submission.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from joedefender.domain.jobs import JobState, SampleJob
from joedefender.domain.reasons import Cause
from joedefender.pipeline.collection.actions import ActionRunner
from joedefender.pipeline.collection.strategy import CollectionStrategy
from joedefender.pipeline.context import DONE, Context, Outcome, again
from joedefender.pipeline.dimensions import bound
from joedefender.pipeline.quota import parked_until, waits_for_quota
from joedefender.pipeline.records import Versioned
from joedefender.pipeline.sample.analysis import Analysis
from joedefender.pipeline.sample.attempts import Attempts
from joedefender.pipeline.sample.collect import Collect
from joedefender.pipeline.sample.handler import Handler, Proceed, Refetch, Result, Staged
from joedefender.pipeline.sample.ledger import JobLedger
from joedefender.pipeline.sample.looks import AnalysisLooks
from joedefender.pipeline.sample.lookup import Lookup
from joedefender.pipeline.sample.resolve import Resolve
from joedefender.pipeline.sample.submit import Submit


class _Final:
    """A final job: its write-back is asked for again (a link may have come since)."""

    def __init__(self, ledger: JobLedger, ctx: Context) -> None:
        self._ledger = ledger
        self._ctx = ctx

    def advance(self, stored: Versioned[SampleJob]) -> Result:
        with self._ctx.changes() as changes:
            self._ledger.announce(changes, stored)
        return DONE


class _Resolved:
    """A path job whose alerts went to the job of its file's hash: that job writes back, not this one."""

    def advance(self, stored: Versioned[SampleJob]) -> Result:
        return DONE


class SampleWork:
    def __init__(self, ctx: Context, runner: ActionRunner, strategies: Sequence[CollectionStrategy]) -> None:
        self._ctx = ctx
        looks = AnalysisLooks(ctx.clock)
        self._ledger = JobLedger(ctx, looks)
        self._collect = Collect(self._ledger, Attempts(ctx, self._ledger, runner, strategies))
        self._submit = Submit(ctx, self._ledger)
        final = _Final(self._ledger, ctx)
        self.handlers: Mapping[JobState, Handler] = {
            JobState.LOOKUP: Lookup(ctx, self._ledger),
            JobState.COLLECT: self._collect,
            JobState.COLLECTING: self._collect,
            JobState.RESOLVE: Resolve(ctx, self._ledger),
            JobState.SUBMIT: self._submit,
            JobState.ANALYSING: Analysis(ctx, self._ledger, looks),
            JobState.DONE: final,
            JobState.FAILED: final,
            JobState.RESOLVED: _Resolved(),
        }

    def run(self, key: str) -> Outcome:
        stored = self._ctx.jobs.get(key)
        while stored is not None:
            parked = self._parked(stored.record)
            if parked is not None:
                return parked
            with bound(**_attempt_ids(stored.record)):
                result = self.handlers[stored.record.state].advance(stored)
                while isinstance(result, Staged | Refetch):
                    if isinstance(result, Refetch):
                        result = self._collect.refetch(stored)
                    else:
                        result = self._submit.file(stored, result.staging, result.file_name)
            if not isinstance(result, Proceed):
                return result
            stored = self._ctx.jobs.get(key)
        return DONE

    def give_up(self, key: str, cause: Cause) -> None:
        """The job fails with `cause`, and its alerts get the failure comment."""
        stored = self._ctx.jobs.get(key)
        if stored is not None and not stored.record.state.final:
            self._ledger.fail(stored, cause)

    def _parked(self, job: SampleJob) -> Outcome | None:
        """No collection or submission starts while Joe's quota is used up."""
        if not waits_for_quota(job):
            return None
        until = parked_until(self._ctx.store, self._ctx.now())
        return None if until is None else again(until - self._ctx.now())


def _attempt_ids(job: SampleJob) -> dict[str, str | None]:
    """The machine and action of the job's current (or last) attempt, for its step's log lines."""
    attempt = job.attempts[-1] if job.attempts else None
    return (
        {"machine_id": None, "action_id": None}
        if attempt is None
        else {
            "machine_id": attempt.machine_id,
            "action_id": attempt.action_id,
        }
    )
