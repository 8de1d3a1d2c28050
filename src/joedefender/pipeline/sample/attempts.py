"""One collection attempt, from its first action to the verified file or its failure.

An attempt runs its strategy's stages, one live response action each, through the action runner:
the intent is saved before each launch (so a crash after it finds the action by its nonce),
the action is looked at until it ends, and the strategy says what follows. The file its last
action fetched is streamed into staging and must hash to the evidence's sha256; the collection
is recorded, with the submission's intent, before the staging is handed on.
"""

from __future__ import annotations

from collections.abc import Sequence

from joedefender.domain.errors import NotAllowed, NotFound, QuarantineFormatError
from joedefender.domain.jobs import Attempt, JobState, SampleJob
from joedefender.domain.liveresponse import LiveResponseAction
from joedefender.domain.markers import mark
from joedefender.domain.reasons import Cause, Reason
from joedefender.pipeline.collection.actions import ActionRunner, Refused
from joedefender.pipeline.collection.cleanup import schedule_cleanup
from joedefender.pipeline.collection.registry import by_name
from joedefender.pipeline.collection.staging import SampleStaging
from joedefender.pipeline.collection.strategy import (
    FETCH_OVERHEAD,
    CollectionStrategy,
    Deliver,
    Failed,
    NextStage,
    Target,
)
from joedefender.pipeline.context import Context, Outcome, again
from joedefender.pipeline.records import Changes, Versioned
from joedefender.pipeline.sample.handler import Proceed, Result, Staged
from joedefender.pipeline.sample.ledger import JobLedger

# What `launch` returns when Defender says another live response session holds the machine.
HELD_ELSEWHERE = Outcome(0.0)


class Attempts:
    def __init__(
        self, ctx: Context, ledger: JobLedger, runner: ActionRunner, strategies: Sequence[CollectionStrategy]
    ) -> None:
        self.ctx = ctx
        self.runner = runner
        self.strategies = strategies
        self._ledger = ledger

    def machine_lease(self) -> float:
        """Nominal seconds a machine is held for one action (its timeout and a few looks)."""
        return self.ctx.config.action_timeout + self.ctx.config.action_poll * 4

    def launch(self, stored: Versioned[SampleJob], attempt: Attempt, note: tuple[str, str] | None = None) -> Outcome:
        """Save the intent (with the history line `note`), then start the attempt's (next)
        action; `HELD_ELSEWHERE` when Defender says another live response session holds the machine."""
        ctx, job = self.ctx, stored.record
        # The intent, so a crash after the call can find the action.
        self._ledger.saved(stored, *(("collect", *note) if note is not None else ()))
        strategy, target = self._strategy(attempt), self._target(job, attempt)
        sample = job.sha256 or job.key  # a file named by its path: the job's key, not the path
        comment = f"{mark(attempt.nonce)}: collect {sample} for Joe Sandbox ({strategy.stage_label(attempt)})"
        try:
            action = self.runner.launch(attempt.machine_id, strategy.commands(target), comment)
        except NotFound as exc:
            return self.failed(stored, attempt, Cause(reason=Reason.MACHINE_NOT_FOUND, detail=exc.message))
        except NotAllowed as exc:
            return self._not_allowed(stored, attempt, exc)
        if isinstance(action, Refused):
            if action.elsewhere:
                self.withdraw(stored, attempt, ("machine busy", attempt.machine_id))
                return HELD_ELSEWHERE
            self.withdraw(stored, attempt)
            return again(action.retry_after) if action.retry_after else ctx.later(ctx.config.busy_retry)
        attempt.action_id = action.id
        # The action's time (and its timeout) counts from Defender's accepting it: the wait for
        # our own limiter before that is not the endpoint's.
        attempt.fetch_started_at = ctx.now()
        step = f"{attempt.strategy} ({attempt.stage})" if attempt.stage else attempt.strategy

        def write(changes: Changes) -> None:
            self._ledger.save(changes, stored)
            changes.record(job.key, "collect", "started", f"{step} on {attempt.machine_id}, action {action.id}")

        self._ledger.commit(stored, write)
        return again(self.runner.next_look(attempt.action_started_at))

    def _not_allowed(self, stored: Versioned[SampleJob], attempt: Attempt, exc: NotAllowed) -> Outcome:
        cause = Cause(reason=Reason.LIVE_RESPONSE_NOT_ALLOWED, detail=exc.message)
        _forget(stored, attempt)
        outcome = self._ledger.fail(stored, cause)
        self.runner.release(attempt.machine_id, stored.record.key)
        return outcome

    def follow(self, stored: Versioned[SampleJob], attempt: Attempt) -> Result:
        """Look at the attempt's action; once it ended, do what its strategy says follows."""
        ctx, runner = self.ctx, self.runner
        if attempt.action_id is None:
            return self._reconcile(stored, attempt)
        action = runner.look(attempt.action_id)
        if action is None:
            if not runner.overdue(attempt.action_started_at):
                return again(runner.next_look(attempt.action_started_at))
            return self.failed(stored, attempt, Cause(reason=Reason.ACTION_LOST))
        if action.status.running:
            if runner.overdue(attempt.action_started_at):
                runner.cancel(action, "collection timed out")
                minutes = str(round(ctx.config.action_timeout / 60))
                return self.failed(stored, attempt, Cause(reason=Reason.ACTION_TIMEOUT, detail=minutes))
            return again(runner.next_look(attempt.action_started_at))
        runner.ended(attempt.action_started_at)
        return self._after(stored, attempt, action)

    def _after(self, stored: Versioned[SampleJob], attempt: Attempt, action: LiveResponseAction) -> Result:
        strategy = self._strategy(attempt)
        following = strategy.after(action, self.runner.results(action.id), self._target(stored.record, attempt))
        if isinstance(following, NextStage):
            return self._next_stage(stored, attempt, following)
        if isinstance(following, Failed):
            return self.failed(stored, attempt, following.cause)
        assert isinstance(following, Deliver)
        return self.take_sample(stored, attempt)

    def _next_stage(self, stored: Versioned[SampleJob], attempt: Attempt, stage: NextStage) -> Outcome:
        """Renew the machine's lease and start the attempt's next action."""
        ctx = self.ctx
        if not self.runner.hold(attempt.machine_id, stored.record.key, self.machine_lease()):
            # Our lease ran out and another job took the machine: start over when it is free.
            self.withdraw(stored, attempt, ("machine busy", attempt.machine_id))
            return ctx.later(ctx.config.busy_retry)
        if stage.listed is not None:
            attempt.listed_paths = stage.listed
        attempt.stage, attempt.fetch_paths, attempt.action_id = stage.stage, stage.paths, None
        attempt.fetch_started_at = ctx.now()
        outcome = self.launch(stored, attempt, stage.note)
        return ctx.later(ctx.config.busy_retry) if outcome is HELD_ELSEWHERE else outcome

    def _reconcile(self, stored: Versioned[SampleJob], attempt: Attempt) -> Outcome:
        """The step that started this attempt died before recording the action: find it by its nonce."""
        label = f"({self._strategy(attempt).stage_label(attempt)})"
        action = self.runner.find(attempt.machine_id, attempt.nonce, label)
        if action is None:
            self.withdraw(stored, attempt)
            return again(0)
        attempt.action_id = action.id
        self._ledger.saved(stored, "collect", "recovered", f"action {action.id} found by its nonce")
        return again(0)

    def take_sample(self, stored: Versioned[SampleJob], attempt: Attempt) -> Result:
        """Get the verified bytes into staging, record the collection, and hand the staging on."""
        job = stored.record
        found, cause = self._stage(job, attempt)
        if found is None:
            return self.failed(stored, attempt, cause)
        try:
            if attempt.outcome != "collected" or job.state != JobState.SUBMIT or job.submission is None:
                self._collected(stored, attempt, found)
        except BaseException:
            found.close()
            raise
        if job.state != JobState.SUBMIT:  # named by its path: hashed, handed to its hash's job
            found.close()
            return Proceed()
        return Staged(found, _file_name(job))

    def _collected(self, stored: Versioned[SampleJob], attempt: Attempt, staging: SampleStaging) -> None:
        ctx, job = self.ctx, stored.record
        newly_collected = attempt.outcome != "collected"
        strategy = self._strategy(attempt)
        delivered = f"{staging.size} bytes from {attempt.machine_id} by {attempt.strategy}: {strategy.how}"

        def write(changes: Changes) -> None:
            if newly_collected:
                attempt.outcome = "collected"
                attempt.ended_at = ctx.now()
                changes.record(job.key, "collect", "collected", delivered)
                self._schedule_cleanup(changes, attempt)
            self._ledger.collected(changes, stored, staging.sha256)

        self._ledger.commit(stored, write)
        if newly_collected:
            self.runner.release(attempt.machine_id, job.key)

    def _stage(self, job: SampleJob, attempt: Attempt) -> tuple[SampleStaging | None, Cause]:
        """Stream the fetched file(s) into staging and verify: the open staging that holds the
        evidence's bytes (for a file named by its path, whose hash is not known yet: the file that
        was there), or None and why not. The strategy turns each into the sample's bytes."""
        ctx, strategy = self.ctx, self._strategy(attempt)
        assert attempt.action_id is not None
        results = self.runner.results(attempt.action_id)
        cause = Cause(reason=Reason.QUARANTINE_NOT_FOUND)
        limit = ctx.config.max_sample_bytes
        for index in strategy.sample_results(attempt):
            staging = SampleStaging(limit, check=ctx.check_lease)
            try:
                with results.stream(index, max_bytes=limit + FETCH_OVERHEAD) as chunks:
                    for chunk in strategy.plain(chunks, limit):
                        staging.write(chunk)
            except QuarantineFormatError:
                staging.close()  # not a readable quarantine entry: try the next one
                continue
            except BaseException:
                staging.close()
                raise
            if job.sha256 in (None, staging.sha256):
                attempt.delivered_index = index
                return staging, cause
            staging.close()
            cause = strategy.mismatch(staging.sha256) or cause
        return None, cause

    def failed(self, stored: Versioned[SampleJob], attempt: Attempt, cause: Cause) -> Outcome:
        ctx, job = self.ctx, stored.record
        attempt.outcome = "failed"
        attempt.failure = cause
        attempt.ended_at = ctx.now()
        job.move_to(JobState.COLLECT)

        def write(changes: Changes) -> None:
            if attempt.action_id is not None and by_name(attempt.strategy, self.strategies) is not None:
                self._schedule_cleanup(changes, attempt)
            self._ledger.save(changes, stored)
            changes.record(
                job.key, "collect", "attempt failed", f"{attempt.strategy} on {attempt.machine_id}: {cause.text}"
            )

        self._ledger.commit(stored, write)
        self.runner.release(attempt.machine_id, job.key)
        return again(0)

    def withdraw(self, stored: Versioned[SampleJob], attempt: Attempt, note: tuple[str, str] | None = None) -> None:
        """Forget an attempt that never reached the endpoint (busy, throttled, or lost in a crash)."""
        _forget(stored, attempt)
        self._ledger.saved(stored, *(("collect", *note) if note is not None else ()))
        self.runner.release(attempt.machine_id, stored.record.key)

    def _schedule_cleanup(self, changes: Changes, attempt: Attempt) -> None:
        """What the attempt's strategy leaves on the endpoint is removed by a later action."""
        if self._strategy(attempt).cleanup(attempt.nonce):
            schedule_cleanup(self.ctx, changes, attempt.machine_id, attempt.nonce, attempt.strategy)

    def _strategy(self, attempt: Attempt) -> CollectionStrategy:
        strategy = by_name(attempt.strategy, self.strategies)
        assert strategy is not None  # the collect handler fails attempts of unknown strategies
        return strategy

    def _target(self, job: SampleJob, attempt: Attempt) -> Target:
        candidate = next((c for c in job.candidates if c.machine_id == attempt.machine_id), None)
        assert candidate is not None  # an attempt is only ever started for a candidate's machine
        platform = job.platform_of(attempt.machine_id)
        return Target(job, candidate, attempt, self.ctx.config.max_sample_bytes, platform)


def _forget(stored: Versioned[SampleJob], attempt: Attempt) -> None:
    job = stored.record
    job.attempts = [a for a in job.attempts if a.nonce != attempt.nonce]
    job.move_to(JobState.COLLECT)


def _file_name(job: SampleJob) -> str:
    for candidate in job.candidates:
        if candidate.file_name:
            return candidate.file_name
    return job.file_name or f"{job.sha256}.bin"
