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

from joedefender.clients.mde.errors import (
    FeatureDisabledError,
    ForbiddenError,
    MachineBusyError,
    NotFoundError,
    ThrottledError,
)
from joedefender.clients.mde.models import LiveResponseCommand, MachineAction
from joedefender.domain.jobs import Attempt, Candidate, JobState, SampleJob, Strategy
from joedefender.endpoint import contract
from joedefender.pipeline.cleanup import schedule_cleanup
from joedefender.pipeline.context import Context, Outcome, again
from joedefender.pipeline.records import Versioned
from joedefender.pipeline.staging import SampleStaging
from joedefender.pipeline.submission import new_nonce, submission_marker, submission_tags

if TYPE_CHECKING:
    from joedefender.pipeline.sample_step import SampleStep

_RUNNING = ("Pending", "InProgress")
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


def _action_errors(action: MachineAction) -> str:
    errors = [e for command in action.commands for e in command.errors]
    return "; ".join(errors) if errors else f"live response ended {action.status}"


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
            return self._jobs.fail(stored, self._give_up_reason(job))
        online: dict[str, bool] = {}
        for machine_id in dict.fromkeys(c.machine_id for c, _ in plan):
            try:
                online[machine_id] = (ctx.defender.get_machine(machine_id).health_status or "") == "Active"
            except NotFoundError:
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
        job.state = JobState.COLLECTING
        job.waiting_since = None
        self._jobs.save(stored)  # the intent, so a crash after the call can find the action
        try:
            action = ctx.defender.run_live_response(
                candidate.machine_id, self._commands(job, candidate, attempt), self._comment(job, attempt)
            )
        except MachineBusyError:
            self._withdraw(stored, attempt)
            ctx.record(job.key, "collect", "machine busy", candidate.machine_id)
            return None
        except ThrottledError as exc:
            self._withdraw(stored, attempt)
            return again(exc.retry_after or ctx.config.busy_retry)
        except NotFoundError as exc:
            return self._attempt_failed(stored, attempt, f"machine not found: {exc.message}")
        except (FeatureDisabledError, ForbiddenError) as exc:
            self._withdraw(stored, attempt)
            return self._jobs.fail(stored, f"live response is not allowed: {exc.message}")
        attempt.action_id = action.id
        self._jobs.save(stored)
        ctx.record(job.key, "collect", "started", f"{strategy} on {candidate.machine_id}, action {action.id}")
        return again(ctx.config.action_poll)

    def _wait_for_machines(self, stored: Versioned[SampleJob], busy: bool, offline: list[str]) -> Outcome:
        ctx, job = self._ctx, stored.record
        now = ctx.now()
        if job.waiting_since is None:
            job.waiting_since = now
            job.poll_interval = None
            ctx.record(
                job.key,
                "collect",
                "waiting",
                ("machines busy; " if busy else "") + (f"offline: {', '.join(offline)}" if offline else ""),
            )
        if now - job.waiting_since > ctx.config.machine_wait_limit:
            minutes = round(ctx.config.machine_wait_limit / ctx.config.time_scale / 60)
            return self._jobs.fail(stored, f"no machine carrying the file was online and free within {minutes} minutes")
        if busy:
            delay = ctx.config.busy_retry
        else:
            job.poll_interval = ctx.config.machine_recheck(job.poll_interval)
            delay = ctx.config.scaled(job.poll_interval)
        self._jobs.save(stored)
        return again(delay)

    def _commands(self, job: SampleJob, candidate: Candidate, attempt: Attempt) -> list[LiveResponseCommand]:
        if attempt.strategy == "getfile":
            assert candidate.path is not None
            return [LiveResponseCommand.get_file(candidate.path)]
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
            LiveResponseCommand.run_script(contract.SCRIPT_NAME, args),
            LiveResponseCommand.get_file(contract.sample_path(attempt.nonce)),
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
            action = ctx.defender.get_machine_action(attempt.action_id)
        except NotFoundError:
            # Defender may not show a new action for a moment (mde-api.md section 3).
            if ctx.now() - attempt.started_at < ctx.config.action_timeout:
                return again(ctx.config.action_poll)
            return self._attempt_failed(stored, attempt, "Defender lost the live response action")
        if action.status in _RUNNING:
            if ctx.now() - attempt.started_at > ctx.config.action_timeout:
                self._cancel(action)
                minutes = round(ctx.config.action_timeout / ctx.config.time_scale / 60)
                return self._attempt_failed(stored, attempt, f"live response did not finish within {minutes} minutes")
            return again(ctx.config.action_poll)
        if action.status != "Succeeded":
            return self._attempt_failed(stored, attempt, self._failure_detail(attempt, action))
        if attempt.strategy == "quarantine":
            outcome = self._script_outcome(attempt)
            if outcome is not None and outcome.status != "found":
                return self._attempt_failed(stored, attempt, self._script_failure(outcome))
        return self._take_sample(stored, attempt)

    def _reconcile(self, stored: Versioned[SampleJob], attempt: Attempt) -> Outcome:
        """The step that started this attempt died before recording the action: find it by its nonce."""
        ctx = self._ctx
        for action in ctx.defender.list_machine_actions(machine_id=attempt.machine_id):
            if attempt.nonce in (action.requestor_comment or ""):
                attempt.action_id = action.id
                self._jobs.save(stored)
                ctx.record(stored.record.key, "collect", "recovered", f"action {action.id} found by its nonce")
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
            with ctx.defender.stream_result(
                attempt.action_id, index, gunzip=True, max_bytes=ctx.config.max_sample_bytes
            ) as chunks:
                for chunk in self._refang(chunks, attempt.strategy == "quarantine"):
                    staging.write(chunk)
            if staging.sha256 != job.sha256:
                detail = f"the collected bytes hash to {staging.sha256}, not the evidence's sha256; rejected"
                return self._attempt_failed(stored, attempt, detail)
            if attempt.outcome != "collected":
                attempt.outcome = "collected"
                attempt.ended_at = ctx.now()
                ctx.store.release(attempt.machine_id, job.key)
                ctx.record(job.key, "collect", "collected", f"{staging.size} bytes from {attempt.machine_id}")
                if attempt.strategy == "quarantine":
                    schedule_cleanup(ctx, attempt.machine_id, attempt.nonce)
            if job.submission is None:
                self._jobs.start_submission(stored)
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
            stored.record.state = JobState.COLLECT
            self._jobs.save(stored)
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
            result = self._ctx.defender.get_script_result(attempt.action_id, 0)
            return contract.ScriptOutcome.from_script_output(result.script_output or "")
        except (contract.ContractError, NotFoundError):
            return None

    @staticmethod
    def _script_failure(outcome: contract.ScriptOutcome) -> str:
        if outcome.status == "not_found":
            return "quarantine entry not found on this machine"
        return f"the collection script failed: {outcome.message or outcome.status}"

    def _failure_detail(self, attempt: Attempt, action: MachineAction) -> str:
        if attempt.strategy == "quarantine" and action.status == "Failed":
            outcome = self._script_outcome(attempt)
            if outcome is not None and outcome.status != "found":
                return self._script_failure(outcome)
        return _action_errors(action)

    def _cancel(self, action: MachineAction) -> None:
        try:
            self._ctx.defender.cancel_machine_action(action.id, "joedefender: collection timed out")
        except (NotFoundError, MachineBusyError):
            pass
        except Exception as exc:  # a failed cancel must not keep the job from moving on
            self._ctx.record("cancel", "collect", "cancel failed", f"{action.id}: {type(exc).__name__}")

    # -- ending an attempt --------------------------------------------------------------------

    def _attempt_failed(self, stored: Versioned[SampleJob], attempt: Attempt, detail: str) -> Outcome:
        ctx, job = self._ctx, stored.record
        if attempt.strategy == "quarantine" and attempt.action_id is not None:
            # Before the failure is saved: a step retried after a crash sees a failed attempt as
            # settled and would never schedule it (scheduling twice is harmless).
            schedule_cleanup(ctx, attempt.machine_id, attempt.nonce)
        attempt.outcome = "failed"
        attempt.detail = detail
        attempt.ended_at = ctx.now()
        job.state = JobState.COLLECT
        self._jobs.save(stored)
        ctx.store.release(attempt.machine_id, job.key)
        ctx.record(job.key, "collect", "attempt failed", f"{attempt.strategy} on {attempt.machine_id}: {detail}")
        return again(0)

    def _withdraw(self, stored: Versioned[SampleJob], attempt: Attempt) -> None:
        """Forget an attempt that never reached the endpoint (busy, throttled, or lost in a crash)."""
        job = stored.record
        job.attempts = [a for a in job.attempts if a.nonce != attempt.nonce]
        job.state = JobState.COLLECT
        self._jobs.save(stored)
        self._ctx.store.release(attempt.machine_id, job.key)

    @staticmethod
    def _give_up_reason(job: SampleJob) -> str:
        if not job.candidates:
            return "no machine is known to carry the file"
        failures = [f"{a.strategy} on {a.machine_id}: {a.detail}" for a in job.attempts if a.outcome == "failed"]
        if any(a.strategy == "quarantine" for a in job.attempts) and all(
            "quarantine entry not found" in a.detail for a in job.attempts if a.strategy == "quarantine"
        ):
            return "quarantine entry not found on any machine" + (f" ({'; '.join(failures)})" if failures else "")
        return "could not collect the file: " + ("; ".join(failures) or "no way to reach it")
