"""Collection: getting the file off an endpoint through live response, then straight to Joe.

A plan of (machine, strategy) pairs is tried in order, online machines first: GetFile on the
evidence path, and for files Defender quarantined, the library script that recovers just that
entry (defanged) followed by GetFile in the same action. One live response per machine at a time
(a lease in the store), the tenant's session cap respected. The bytes must hash to the evidence's
sha256; they are streamed into staging and submitted at once, never kept.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from joedefender.domain.errors import Busy, NotAllowed, NotFound, Throttled
from joedefender.domain.jobs import Attempt, Candidate, JobState, SampleJob, Strategy
from joedefender.domain.liveresponse import ActionStatus, Command, LiveResponseAction
from joedefender.domain.reasons import Cause, Reason
from joedefender.endpoint import contract
from joedefender.pipeline.cleanup import schedule_cleanup
from joedefender.pipeline.context import Context, Outcome, again
from joedefender.pipeline.records import Versioned
from joedefender.pipeline.staging import SampleStaging
from joedefender.pipeline.submission import new_nonce, submission_marker, submission_tags

if TYPE_CHECKING:
    from joedefender.pipeline.sample_step import SampleStep

_QUARANTINE_FIRST = {"prevented", "blocked", "remediated", "quarantined"}


def _strategies(candidate: Candidate, quarantine_allowed: bool) -> list[Strategy]:
    """GetFile where the file may still be; the quarantine script for what AV took away
    (first, when the evidence says it was prevented or blocked)."""
    plan: list[Strategy] = ["getfile"] if candidate.path else []
    if quarantine_allowed and candidate.detection_source.lower() == "windowsdefenderav":
        if (candidate.detection_status or "").lower() in _QUARANTINE_FIRST:
            plan.insert(0, "quarantine")
        else:
            plan.append("quarantine")
    return plan


class Collector:
    def __init__(self, ctx: Context, jobs: SampleStep) -> None:
        self._ctx = ctx
        self._jobs = jobs
        self._script_ready = False
        self._script_lock = threading.Lock()

    def step(self, stored: Versioned[SampleJob]) -> Outcome:
        current = stored.record.current
        if current is None:
            return self._start_next(stored)
        return self._follow(stored, current)

    # -- starting an attempt ------------------------------------------------------------------

    def _plan(self, job: SampleJob) -> list[tuple[Candidate, Strategy]]:
        tried = {(a.machine_id, a.strategy) for a in job.attempts if a.outcome == "failed"}
        plan: list[tuple[Candidate, Strategy]] = []
        seen: set[tuple[str, Strategy]] = set()
        for candidate in job.candidates:
            for strategy in _strategies(candidate, self._ctx.config.fetch_quarantined_files):
                pair = (candidate.machine_id, strategy)
                if pair not in tried and pair not in seen:
                    seen.add(pair)
                    plan.append((candidate, strategy))
        return plan

    def _start_next(self, stored: Versioned[SampleJob]) -> Outcome:
        ctx, job = self._ctx, stored.record
        plan = self._plan(job)
        if not plan:
            return self._jobs.fail(stored, self._give_up_cause(job))
        online: dict[str, bool] = {}
        for machine_id in dict.fromkeys(c.machine_id for c, _ in plan):
            try:
                online[machine_id] = ctx.defender.get_machine(machine_id).online
            except NotFound:
                online[machine_id] = False
        plan.sort(key=lambda item: not online[item[0].machine_id])
        busy = False
        for candidate, strategy in plan:
            if not online[candidate.machine_id]:
                continue
            outcome = self._start(stored, candidate, strategy)
            if outcome is not None:
                return outcome
            busy = True
        return self._wait_for_machines(stored, busy, [m for m, up in online.items() if not up])

    def _start(self, stored: Versioned[SampleJob], candidate: Candidate, strategy: Strategy) -> Outcome | None:
        """Start one attempt; None when the machine is busy."""
        ctx, job = self._ctx, stored.record
        now = ctx.now()
        lease_until = now + ctx.config.action_timeout + ctx.config.action_poll * 4
        if not ctx.store.acquire(
            candidate.machine_id, job.key, now, lease_until, ctx.config.max_live_response_sessions
        ):
            return None
        if strategy == "quarantine":
            self._ensure_script()
        attempt = Attempt(
            number=len(job.attempts) + 1,
            machine_id=candidate.machine_id,
            strategy=strategy,
            nonce=new_nonce(),
            started_at=now,
        )
        job.attempts.append(attempt)
        job.move_to(JobState.COLLECTING)
        job.waiting_since = None
        with ctx.changes() as changes:  # the intent, so a crash after the call can find the action
            self._jobs.save(changes, stored)
        try:
            action = ctx.defender.run_live_response(
                candidate.machine_id, self._commands(job, candidate, attempt), self._comment(job, attempt)
            )
        except Busy:
            self._withdraw(stored, attempt, ("machine busy", candidate.machine_id))
            return None
        except Throttled as exc:
            self._withdraw(stored, attempt)
            return again(exc.retry_after or ctx.config.busy_retry)
        except NotFound as exc:
            return self._attempt_failed(stored, attempt, Cause(reason=Reason.MACHINE_NOT_FOUND, detail=exc.message))
        except NotAllowed as exc:
            cause = Cause(reason=Reason.LIVE_RESPONSE_NOT_ALLOWED, detail=exc.message)
            with ctx.changes() as changes:
                self._forget(stored, attempt)
                outcome = self._jobs.fail(stored, cause, changes)
            ctx.store.release(attempt.machine_id, job.key)
            return outcome
        attempt.action_id = action.id
        with ctx.changes() as changes:
            self._jobs.save(changes, stored)
            changes.record(job.key, "collect", "started", f"{strategy} on {candidate.machine_id}, action {action.id}")
        return again(ctx.config.action_poll)

    def _wait_for_machines(self, stored: Versioned[SampleJob], busy: bool, offline: list[str]) -> Outcome:
        ctx, job = self._ctx, stored.record
        now = ctx.now()
        with ctx.changes() as changes:
            if job.waiting_since is None:
                job.waiting_since = now
                job.poll_interval = None
                changes.record(
                    job.key,
                    "collect",
                    "waiting",
                    ("machines busy; " if busy else "") + (f"offline: {', '.join(offline)}" if offline else ""),
                )
            if now - job.waiting_since > ctx.config.machine_wait_limit:
                minutes = round(ctx.config.machine_wait_limit / ctx.config.time_scale / 60)
                return self._jobs.fail(stored, Cause(reason=Reason.MACHINES_UNAVAILABLE, detail=str(minutes)), changes)
            if busy:
                delay = ctx.config.busy_retry
            else:
                job.poll_interval = ctx.config.machine_recheck(job.poll_interval)
                delay = ctx.config.scaled(job.poll_interval)
            self._jobs.save(changes, stored)
        return again(delay)

    def _commands(self, job: SampleJob, candidate: Candidate, attempt: Attempt) -> list[Command]:
        if attempt.strategy == "getfile":
            assert candidate.path is not None
            return [Command.get_file(candidate.path)]
        assert job.sha256 is not None
        request = contract.CollectRequest(
            mode="Collect",
            job_id=attempt.nonce,
            sha256=job.sha256,
            threat_name=candidate.threat_name,
            original_path=candidate.path,
        )
        try:
            args = contract.format_args(request)
        except contract.ContractError:
            # Attacker-side values that fail validation are dropped; the hash alone suffices.
            args = contract.format_args(
                contract.CollectRequest(mode="Collect", job_id=attempt.nonce, sha256=job.sha256)
            )
        return [
            Command.run_script(contract.SCRIPT_NAME, args),
            Command.get_file(contract.sample_path(attempt.nonce)),
        ]

    @staticmethod
    def _comment(job: SampleJob, attempt: Attempt) -> str:
        return f"joedefender {attempt.nonce}: collect {job.sha256} for Joe Sandbox ({attempt.strategy})"

    def _ensure_script(self) -> None:
        with self._script_lock:
            if self._script_ready:
                return
            self._ctx.defender.ensure_library_file(
                contract.SCRIPT_NAME,
                contract.script_bytes(),
                description="joedefender: recovers one quarantined file by SHA-256 for Joe Sandbox analysis",
                parameters_description=(
                    "-Mode Collect|Cleanup -JobId ID [-Sha256 HEX] [-ThreatName NAME] [-OriginalPath PATH]"
                ),
            )
            self._script_ready = True

    # -- following an attempt -----------------------------------------------------------------

    def _follow(self, stored: Versioned[SampleJob], attempt: Attempt) -> Outcome:
        ctx = self._ctx
        if attempt.action_id is None:
            return self._reconcile(stored, attempt)
        try:
            action = ctx.defender.get_action(attempt.action_id)
        except NotFound:
            # Defender may not show a new action for a moment (mde-api.md section 3).
            if ctx.now() - attempt.started_at < ctx.config.action_timeout:
                return again(ctx.config.action_poll)
            return self._attempt_failed(stored, attempt, Cause(reason=Reason.ACTION_LOST))
        if action.status.running:
            if ctx.now() - attempt.started_at > ctx.config.action_timeout:
                self._cancel(action)
                minutes = round(ctx.config.action_timeout / ctx.config.time_scale / 60)
                return self._attempt_failed(stored, attempt, Cause(reason=Reason.ACTION_TIMEOUT, detail=str(minutes)))
            return again(ctx.config.action_poll)
        if action.status != ActionStatus.SUCCEEDED:
            return self._attempt_failed(stored, attempt, self._failure_cause(attempt, action))
        if attempt.strategy == "quarantine":
            outcome = self._script_outcome(attempt)
            if outcome is not None and outcome.status != "found":
                return self._attempt_failed(stored, attempt, self._script_failure(outcome))
        return self._take_sample(stored, attempt)

    def _reconcile(self, stored: Versioned[SampleJob], attempt: Attempt) -> Outcome:
        """The step that started this attempt died before recording the action: find it by its nonce."""
        ctx = self._ctx
        for action in ctx.defender.list_actions(attempt.machine_id):
            if attempt.nonce in action.comment:
                attempt.action_id = action.id
                with ctx.changes() as changes:
                    self._jobs.save(changes, stored)
                    changes.record(stored.record.key, "collect", "recovered", f"action {action.id} found by its nonce")
                return again(0)
        self._withdraw(stored, attempt)
        return again(0)

    def _take_sample(self, stored: Versioned[SampleJob], attempt: Attempt) -> Outcome:
        """Stream the GetFile result into staging, verify it, and hand it to Joe."""
        ctx, job = self._ctx, stored.record
        assert attempt.action_id is not None
        assert job.sha256 is not None
        index = 1 if attempt.strategy == "quarantine" else 0
        with SampleStaging(ctx.config.max_sample_bytes) as staging:
            with ctx.defender.stream_file(attempt.action_id, index, max_bytes=ctx.config.max_sample_bytes) as chunks:
                for chunk in self._refang(chunks, attempt.strategy == "quarantine"):
                    staging.write(chunk)
            if staging.sha256 != job.sha256:
                cause = Cause(reason=Reason.HASH_MISMATCH, detail=staging.sha256)
                return self._attempt_failed(stored, attempt, cause)
            if attempt.outcome != "collected" or job.state != JobState.SUBMIT or job.submission is None:
                newly_collected = attempt.outcome != "collected"
                with ctx.changes() as changes:
                    if newly_collected:
                        attempt.outcome = "collected"
                        attempt.ended_at = ctx.now()
                        changes.record(
                            job.key, "collect", "collected", f"{staging.size} bytes from {attempt.machine_id}"
                        )
                        if attempt.strategy == "quarantine":
                            schedule_cleanup(ctx, changes, attempt.machine_id, attempt.nonce)
                    self._jobs.start_submission(changes, stored)
                if newly_collected:
                    ctx.store.release(attempt.machine_id, job.key)
            submission_id = ctx.sandbox.submit_file(
                staging.reader(),
                self._file_name(job),
                tags=submission_tags(job),
                comments=submission_marker(job),
            )
        return self._jobs.submitted(stored, submission_id)

    def resubmit_collected(self, stored: Versioned[SampleJob]) -> Outcome:
        """Joe was not reachable right after collection: fetch the result again (the link can be
        asked for anew) and submit."""
        collected = [a for a in stored.record.attempts if a.outcome == "collected"]
        if not collected:
            stored.record.move_to(JobState.COLLECT)
            with self._ctx.changes() as changes:
                self._jobs.save(changes, stored)
            return again(0)
        return self._take_sample(stored, collected[-1])

    @staticmethod
    def _refang(chunks: Iterator[bytes], defanged: bool) -> Iterator[bytes]:
        if not defanged:
            yield from chunks
            return
        refanger = contract.Refanger()
        for chunk in chunks:
            yield refanger.feed(chunk)

    @staticmethod
    def _file_name(job: SampleJob) -> str:
        for candidate in job.candidates:
            if candidate.file_name:
                return candidate.file_name
        return job.file_name or f"{job.sha256}.bin"

    def _script_outcome(self, attempt: Attempt) -> contract.ScriptOutcome | None:
        assert attempt.action_id is not None
        try:
            output = self._ctx.defender.script_output(attempt.action_id, 0)
            return contract.ScriptOutcome.from_script_output(output)
        except (contract.ContractError, NotFound):
            return None

    @staticmethod
    def _script_failure(outcome: contract.ScriptOutcome) -> Cause:
        if outcome.status == "not_found":
            return Cause(reason=Reason.QUARANTINE_NOT_FOUND)
        return Cause(reason=Reason.SCRIPT_FAILED, detail=outcome.message or outcome.status)

    def _failure_cause(self, attempt: Attempt, action: LiveResponseAction) -> Cause:
        if attempt.strategy == "quarantine" and action.status == ActionStatus.FAILED:
            outcome = self._script_outcome(attempt)
            if outcome is not None and outcome.status != "found":
                return self._script_failure(outcome)
        return Cause(reason=Reason.ACTION_FAILED, detail=action.describe_failure())

    def _cancel(self, action: LiveResponseAction) -> None:
        try:
            self._ctx.defender.cancel_action(action.id, "joedefender: collection timed out")
        except (NotFound, Busy):
            pass
        except Exception as exc:  # a failed cancel must not keep the job from moving on
            self._ctx.record("cancel", "collect", "cancel failed", f"{action.id}: {type(exc).__name__}")

    # -- ending an attempt --------------------------------------------------------------------

    def _attempt_failed(self, stored: Versioned[SampleJob], attempt: Attempt, cause: Cause) -> Outcome:
        ctx, job = self._ctx, stored.record
        attempt.outcome = "failed"
        attempt.failure = cause
        attempt.ended_at = ctx.now()
        job.move_to(JobState.COLLECT)
        with ctx.changes() as changes:
            if attempt.strategy == "quarantine" and attempt.action_id is not None:
                schedule_cleanup(ctx, changes, attempt.machine_id, attempt.nonce)
            self._jobs.save(changes, stored)
            changes.record(
                job.key, "collect", "attempt failed", f"{attempt.strategy} on {attempt.machine_id}: {cause.text}"
            )
        ctx.store.release(attempt.machine_id, job.key)
        return again(0)

    def _withdraw(self, stored: Versioned[SampleJob], attempt: Attempt, note: tuple[str, str] | None = None) -> None:
        """Forget an attempt that never reached the endpoint (busy, throttled, or lost in a crash)."""
        with self._ctx.changes() as changes:
            self._forget(stored, attempt)
            self._jobs.save(changes, stored)
            if note is not None:
                changes.record(stored.record.key, "collect", *note)
        self._ctx.store.release(attempt.machine_id, stored.record.key)

    @staticmethod
    def _forget(stored: Versioned[SampleJob], attempt: Attempt) -> None:
        job = stored.record
        job.attempts = [a for a in job.attempts if a.nonce != attempt.nonce]
        job.move_to(JobState.COLLECT)

    @staticmethod
    def _give_up_cause(job: SampleJob) -> Cause:
        if not job.candidates:
            return Cause(reason=Reason.NO_CANDIDATE)
        failed = [a for a in job.attempts if a.outcome == "failed"]
        failures = [f"{a.strategy} on {a.machine_id}: {a.failure.text if a.failure else ''}" for a in failed]
        quarantine = [a for a in job.attempts if a.strategy == "quarantine"]
        if quarantine and all(
            a.failure is not None and a.failure.reason == Reason.QUARANTINE_NOT_FOUND for a in quarantine
        ):
            return Cause(
                reason=Reason.QUARANTINE_NOT_FOUND_ANYWHERE, detail=f" ({'; '.join(failures)})" if failures else ""
            )
        return Cause(reason=Reason.NOT_COLLECTED, detail="; ".join(failures) or "no way to reach it")
