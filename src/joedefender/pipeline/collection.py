"""Collection: getting the file off an endpoint through live response, then straight to Joe.

A plan of (machine, strategy) pairs is tried in order, online machines first: GetFile on the
evidence path, and for files Defender quarantined, safest first: "locate" (the read-only
locator script lists the quarantine's Entries and encrypted ResourceData files; a second action
GetFiles the Entries files, read here to find the ResourceData files of the evidence's path; a
third GetFiles those, or the newest listed when no entry names the evidence, and they are
decoded here), "quarantine" (the collect script decodes on the endpoint and
leaves only the match, defanged, for a GetFile in the same action), and, only when
AllowQuarantineRestore is on, "restore" (MpCmdRun -Restore, which takes the entry out of the
quarantine). One live response per machine at a time (a lease in the store), the tenant's
session cap respected. The bytes must hash to the evidence's sha256; they are streamed into
staging and submitted at once, never kept.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from joedefender.domain.errors import Busy, NotAllowed, NotFound, QuarantineFormatError, Rejected, Throttled
from joedefender.domain.jobs import Attempt, Candidate, JobState, SampleJob, Stage, Strategy
from joedefender.domain.liveresponse import ActionStatus, Command, LiveResponseAction
from joedefender.domain.reasons import Cause, Reason
from joedefender.endpoint import contract
from joedefender.formats.defender_quarantine import (
    MAX_ENTRIES_BYTES,
    QuarantineResource,
    decode_resource,
    parse_entries,
)
from joedefender.pipeline.cleanup import schedule_cleanup
from joedefender.pipeline.context import Context, Outcome, again
from joedefender.pipeline.machine_health import MachineHealth
from joedefender.pipeline.pacing import PollPlan, StartPace
from joedefender.pipeline.records import Changes, Versioned
from joedefender.pipeline.staging import SampleStaging
from joedefender.pipeline.submission import new_nonce, submission_marker, submission_tags

if TYPE_CHECKING:
    from joedefender.pipeline.sample_step import SampleStep

# What `_launch` returns when Defender says another live response session holds the machine.
_HELD_ELSEWHERE = Outcome(0.0)
_QUARANTINE_FIRST = {"prevented", "blocked", "remediated", "quarantined"}
# The strategies that run the collect script, which writes a job folder to clean up afterwards.
_SCRIPTED: frozenset[Strategy] = frozenset({"quarantine", "restore"})
# At most this many ResourceData files are fetched: those the Entries files name for the
# evidence, or else the newest listed that could hold the file.
MAX_FETCHED_ENTRIES = 8
# At most this many Entries files (the newest listed, each at most MAX_ENTRIES_BYTES) are fetched.
MAX_ENTRIES_FILES = 32
# A ResourceData file is the payload plus a security descriptor, stream headers and small streams.
_ENTRY_OVERHEAD = 1 << 20


def _strategies(candidate: Candidate, quarantine_allowed: bool, restore_allowed: bool) -> list[Strategy]:
    """GetFile where the file may still be; the quarantine strategies for what AV took away,
    safest first (first of all when the evidence says it was prevented or blocked); the
    destructive restore only when allowed, and always last."""
    plan: list[Strategy] = ["getfile"] if candidate.path else []
    if not quarantine_allowed or candidate.detection_source.lower() != "windowsdefenderav":
        return plan
    quarantine: list[Strategy] = ["locate", "quarantine"]
    plan = quarantine + plan if (candidate.detection_status or "").lower() in _QUARANTINE_FIRST else plan + quarantine
    if restore_allowed and candidate.path is not None and _restorable(candidate.path):
        plan.append("restore")
    return plan


def _comment_tag(attempt: Attempt) -> str:
    """What ends the comment of each of an attempt's actions (they share its nonce)."""
    staged = attempt.stage in ("entries", "fetch")
    return f"({attempt.strategy}, {attempt.stage})" if staged else f"({attempt.strategy})"


def _holds(resource: QuarantineResource, path: str | None, name: str | None, max_bytes: int) -> bool:
    """Whether an entry's file resource may be the evidence: the same original path, or when the
    evidence has none, the same file name (case-insensitive, as Windows compares them)."""
    if resource.kind != "file" or resource.resource_data_path is None:
        return False
    if resource.size is not None and resource.size > max_bytes:
        return False
    if path:
        return resource.path.casefold() == path.casefold()
    return bool(name) and resource.path.rsplit("\\", 1)[-1].casefold() == (name or "").casefold()


def _restorable(path: str) -> bool:
    try:
        contract.ORIGINAL_PATH_RULE.check(path)
    except contract.ContractError:
        return False
    return True


class Collector:
    def __init__(self, ctx: Context, jobs: SampleStep) -> None:
        self._ctx = ctx
        self._jobs = jobs
        self._health = MachineHealth(ctx)
        self._starts = StartPace(ctx.config.live_response_starts_per_minute)
        self._action_polls = PollPlan(ctx.config.action_polls_per_minute)
        self._scripts_ready: set[str] = set()
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
            config = self._ctx.config
            for strategy in _strategies(candidate, config.fetch_quarantined_files, config.allow_quarantine_restore):
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
        # Our own budget for starts: wait for this job's turn without holding a worker (and
        # without asking for the machines' health before it is worth knowing).
        turn = self._starts.wait(job.key, ctx.now(), ctx.config.scaled(60))
        if turn > 0:
            return again(turn)
        online = self._health.online(c.machine_id for c, _ in plan)
        offline = [m for m, up in online.items() if not up]
        plan.sort(key=lambda item: not online[item[0].machine_id])
        ours = elsewhere = False
        for candidate, strategy in plan:
            if not online[candidate.machine_id]:
                continue
            outcome = self._start(stored, candidate, strategy)
            if outcome is _HELD_ELSEWHERE:
                elsewhere = True
            elif outcome is not None:
                return outcome
            else:
                ours = True
        return self._wait_for_machines(stored, ours, elsewhere, offline)

    def _start(self, stored: Versioned[SampleJob], candidate: Candidate, strategy: Strategy) -> Outcome | None:
        """Start one attempt; None when another job of ours holds the machine (or our session cap
        is reached), `_HELD_ELSEWHERE` when Defender says someone else's session holds it."""
        ctx, job = self._ctx, stored.record
        now = ctx.now()
        lease_until = now + ctx.config.action_timeout + ctx.config.action_poll * 4
        if not ctx.store.acquire(
            candidate.machine_id, job.key, now, lease_until, ctx.config.max_live_response_sessions
        ):
            return None
        if strategy in _SCRIPTED:
            self._ensure_script(contract.SCRIPT_NAME)
        elif strategy == "locate":
            self._ensure_script(contract.LOCATE_SCRIPT_NAME)
        attempt = Attempt(
            number=len(job.attempts) + 1,
            machine_id=candidate.machine_id,
            strategy=strategy,
            nonce=new_nonce(),
            started_at=now,
            stage="locate" if strategy == "locate" else None,
        )
        job.attempts.append(attempt)
        job.move_to(JobState.COLLECTING)
        job.waiting_since = None
        return self._launch(stored, candidate, attempt)

    def _launch(
        self, stored: Versioned[SampleJob], candidate: Candidate, attempt: Attempt, note: tuple[str, str] | None = None
    ) -> Outcome:
        """Save the intent (with the history line `note`), then start the attempt's (next) action;
        `_HELD_ELSEWHERE` when Defender says another live response session holds the machine."""
        ctx, job = self._ctx, stored.record
        strategy = attempt.strategy
        with ctx.changes() as changes:  # the intent, so a crash after the call can find the action
            self._jobs.save(changes, stored)
            if note is not None:
                changes.record(job.key, "collect", *note)
        try:
            action = ctx.defender.run_live_response(
                candidate.machine_id, self._commands(job, candidate, attempt), self._comment(job, attempt)
            )
        except Busy:
            self._withdraw(stored, attempt, ("machine busy", candidate.machine_id))
            return _HELD_ELSEWHERE
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
        # The action's time (and its timeout) counts from Defender's accepting it: the wait for
        # our own limiter before that is not the endpoint's.
        attempt.fetch_started_at = ctx.now()
        step = f"{strategy} ({attempt.stage})" if attempt.stage else strategy

        def write(changes: Changes) -> None:
            self._jobs.save(changes, stored)
            changes.record(job.key, "collect", "started", f"{step} on {candidate.machine_id}, action {action.id}")

        self._jobs.commit_rebased(stored, write)
        return again(self._next_look(attempt))

    def _wait_for_machines(
        self, stored: Versioned[SampleJob], ours: bool, elsewhere: bool, offline: list[str]
    ) -> Outcome:
        """No candidate could be used. The machine availability deadline runs only while the
        world keeps them from us (offline, or held by someone else's session), not while our own
        jobs or our own session cap do: that is our queueing, and ends as our jobs end."""
        ctx, job = self._ctx, stored.record
        now = ctx.now()
        busy = ours or elsewhere
        if ours:
            if job.waiting_since is not None:
                job.waiting_since, job.poll_interval = None, None
                with ctx.changes() as changes:
                    self._jobs.save(changes, stored)
            return again(ctx.config.busy_retry)
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
        if attempt.strategy == "locate":
            if attempt.stage in ("entries", "fetch"):
                return [Command.get_file(path) for path in attempt.fetch_paths]
            return [Command.run_script(contract.LOCATE_SCRIPT_NAME, contract.format_locate_args(attempt.nonce))]
        assert job.sha256 is not None
        if attempt.strategy == "restore":
            request = contract.CollectRequest("Restore", attempt.nonce, job.sha256, original_path=candidate.path)
        else:
            request = contract.CollectRequest("Collect", attempt.nonce, job.sha256)
        return [
            Command.run_script(contract.SCRIPT_NAME, contract.format_args(request)),
            Command.get_file(contract.sample_path(attempt.nonce)),
        ]

    @staticmethod
    def _comment(job: SampleJob, attempt: Attempt) -> str:
        return f"joedefender {attempt.nonce}: collect {job.sha256} for Joe Sandbox {_comment_tag(attempt)}"

    def _ensure_script(self, name: str) -> None:
        descriptions = {
            contract.SCRIPT_NAME: (
                "joedefender: recovers one quarantined file by SHA-256 for Joe Sandbox analysis",
                "-Mode Collect|Restore|Cleanup -JobId ID [-Sha256 HEX] [-OriginalPathHex HEX]",
            ),
            contract.LOCATE_SCRIPT_NAME: (
                "joedefender: lists Defender quarantine entries (read-only) for Joe Sandbox analysis",
                "-JobId ID",
            ),
        }
        with self._script_lock:
            if name in self._scripts_ready:
                return
            description, parameters = descriptions[name]
            self._ctx.defender.ensure_library_file(
                name, contract.script_bytes(name), description=description, parameters_description=parameters
            )
            self._scripts_ready.add(name)

    # -- following an attempt -----------------------------------------------------------------

    def _follow(self, stored: Versioned[SampleJob], attempt: Attempt) -> Outcome:
        ctx = self._ctx
        if attempt.action_id is None:
            return self._reconcile(stored, attempt)
        try:
            action = ctx.defender.get_action(attempt.action_id)
        except NotFound:
            # Defender may not show a new action for a moment (mde-api.md section 3).
            if ctx.now() - attempt.action_started_at < ctx.config.action_timeout:
                return again(self._next_look(attempt))
            return self._attempt_failed(stored, attempt, Cause(reason=Reason.ACTION_LOST))
        if action.status.running:
            if ctx.now() - attempt.action_started_at > ctx.config.action_timeout:
                self._cancel(action)
                minutes = round(ctx.config.action_timeout / ctx.config.time_scale / 60)
                return self._attempt_failed(stored, attempt, Cause(reason=Reason.ACTION_TIMEOUT, detail=str(minutes)))
            return again(self._next_look(attempt))
        self._action_polls.finished((ctx.now() - attempt.action_started_at) / ctx.config.time_scale)
        if attempt.stage == "entries":  # Entries that cannot be fetched leave the listing to go by
            return self._fetch_selected(stored, attempt, fetched=action.status == ActionStatus.SUCCEEDED)
        if action.status != ActionStatus.SUCCEEDED:
            return self._attempt_failed(stored, attempt, self._failure_cause(attempt, action))
        if attempt.strategy in _SCRIPTED:
            outcome = self._script_outcome(attempt)
            if outcome is not None and outcome.status != "found":
                return self._attempt_failed(stored, attempt, self._script_failure(outcome))
        if attempt.stage == "locate":
            return self._fetch_located(stored, attempt)
        return self._take_sample(stored, attempt)

    def _fetch_located(self, stored: Versioned[SampleJob], attempt: Attempt) -> Outcome:
        """The locator listed the quarantine: GetFile its Entries files, or when it listed none,
        the newest ResourceData files that could hold the file."""
        ctx = self._ctx
        assert attempt.action_id is not None
        try:
            located = contract.LocateOutcome.from_script_output(ctx.defender.script_output(attempt.action_id, 0))
        except (contract.ContractError, NotFound) as exc:
            return self._attempt_failed(stored, attempt, Cause(reason=Reason.SCRIPT_FAILED, detail=str(exc)[:200]))
        if located.status == "error":
            return self._attempt_failed(stored, attempt, Cause(reason=Reason.SCRIPT_FAILED, detail=located.message))
        limit = ctx.config.max_sample_bytes + _ENTRY_OVERHEAD
        paths = [r.path for r in located.resources if r.size <= limit][:MAX_FETCHED_ENTRIES]
        if not paths:
            return self._attempt_failed(stored, attempt, Cause(reason=Reason.QUARANTINE_NOT_FOUND))
        entries = [e.path for e in located.entries if e.size <= MAX_ENTRIES_BYTES][:MAX_ENTRIES_FILES]
        listed = f"{len(located.resources)} quarantine entries and {len(located.entries)} Entries files listed"
        if entries:
            attempt.listed_paths = paths
            note = f"{listed} ({located.language_mode}); fetching {len(entries)} Entries files"
            return self._next_action(stored, attempt, "entries", entries, ("located", note))
        note = f"{listed} ({located.language_mode}); listing fallback: fetching {len(paths)}"
        return self._next_action(stored, attempt, "fetch", paths, ("located", note))

    def _fetch_selected(self, stored: Versioned[SampleJob], attempt: Attempt, *, fetched: bool) -> Outcome:
        """The Entries files came back (or not): GetFile the ResourceData files of the entries that
        name the evidence, else (none fetched, readable or matching) the newest listed ones."""
        selected, read = self._matching_resources(stored.record, attempt) if fetched else ([], 0)
        if selected:
            note = f"entries matched: {read} Entries files read; fetching {len(selected)}"
            return self._next_action(stored, attempt, "fetch", selected, ("selected", note))
        why = f"{read} of {len(attempt.fetch_paths)} Entries files read, none names the evidence"
        note = f"listing fallback ({why if fetched else 'the Entries files could not be fetched'}); "
        note += f"fetching {len(attempt.listed_paths)}"
        return self._next_action(stored, attempt, "fetch", attempt.listed_paths, ("selected", note))

    def _matching_resources(self, job: SampleJob, attempt: Attempt) -> tuple[list[str], int]:
        """The ResourceData paths the fetched Entries files give for the evidence's path (or, when
        it has none, its file name), at most MAX_FETCHED_ENTRIES; and how many Entries were read."""
        ctx = self._ctx
        assert attempt.action_id is not None
        candidate = self._candidate(job, attempt)
        name = candidate.file_name or job.file_name
        paths: list[str] = []
        read = 0
        for index in range(len(attempt.fetch_paths)):
            try:
                with ctx.defender.stream_file(attempt.action_id, index, max_bytes=MAX_ENTRIES_BYTES) as chunks:
                    entry = parse_entries(b"".join(chunks))
            except (QuarantineFormatError, NotFound, Rejected):
                continue  # damaged, or not there: the others may still name the evidence
            read += 1
            for resource in entry.resources:
                if _holds(resource, candidate.path, name, ctx.config.max_sample_bytes):
                    assert resource.resource_data_path is not None
                    paths.append(f"{contract.QUARANTINE_ROOT}\\{resource.resource_data_path}")
        return list(dict.fromkeys(paths))[:MAX_FETCHED_ENTRIES], read

    def _next_action(
        self, stored: Versioned[SampleJob], attempt: Attempt, stage: Stage, paths: list[str], note: tuple[str, str]
    ) -> Outcome:
        """Renew the machine's lease and start the attempt's next GetFile action on ``paths``."""
        ctx, job = self._ctx, stored.record
        candidate = self._candidate(job, attempt)
        now = ctx.now()
        lease_until = now + ctx.config.action_timeout + ctx.config.action_poll * 4
        if not ctx.store.acquire(attempt.machine_id, job.key, now, lease_until, ctx.config.max_live_response_sessions):
            # Our lease ran out and another job took the machine: start over when it is free.
            self._withdraw(stored, attempt, ("machine busy", attempt.machine_id))
            return again(ctx.config.busy_retry)
        attempt.stage, attempt.fetch_paths, attempt.action_id = stage, paths, None
        attempt.fetch_started_at = now
        outcome = self._launch(stored, candidate, attempt, note)
        return again(ctx.config.busy_retry) if outcome is _HELD_ELSEWHERE else outcome

    def _next_look(self, attempt: Attempt) -> float:
        """Real seconds until the next look at the attempt's action: from its elapsed time, the
        shortest recent action, and the poll budget shared by every running session."""
        ctx = self._ctx
        now = ctx.now()
        elapsed = (now - attempt.action_started_at) / ctx.config.time_scale
        return ctx.config.scaled(self._action_polls.next_look(elapsed, ctx.store.active(now)))

    @staticmethod
    def _candidate(job: SampleJob, attempt: Attempt) -> Candidate:
        candidate = next((c for c in job.candidates if c.machine_id == attempt.machine_id), None)
        assert candidate is not None  # an attempt is only ever started for a candidate's machine
        return candidate

    def _reconcile(self, stored: Versioned[SampleJob], attempt: Attempt) -> Outcome:
        """The step that started this attempt died before recording the action: find it by its nonce."""
        ctx = self._ctx
        tag = _comment_tag(attempt)
        for action in ctx.defender.list_actions(attempt.machine_id):
            if attempt.nonce in action.comment and tag in action.comment:
                attempt.action_id = action.id
                with ctx.changes() as changes:
                    self._jobs.save(changes, stored)
                    changes.record(stored.record.key, "collect", "recovered", f"action {action.id} found by its nonce")
                return again(0)
        self._withdraw(stored, attempt)
        return again(0)

    def _stage(self, attempt: Attempt, sha256: str) -> tuple[SampleStaging | None, Cause]:
        """Stream the GetFile result(s) into staging and verify: the open staging that holds the
        evidence's bytes, or None and why not. Entries the locator found are decoded on the way."""
        ctx = self._ctx
        assert attempt.action_id is not None
        if attempt.strategy == "locate":
            indexes = [attempt.delivered_index] if attempt.delivered_index is not None else []
            indexes = indexes or list(range(len(attempt.fetch_paths)))
        else:
            indexes = [1 if attempt.strategy in _SCRIPTED else 0]
        cause = Cause(reason=Reason.QUARANTINE_NOT_FOUND)
        limit = ctx.config.max_sample_bytes
        for index in indexes:
            staging = SampleStaging(limit, check=ctx.check_lease)
            try:
                with ctx.defender.stream_file(attempt.action_id, index, max_bytes=limit + _ENTRY_OVERHEAD) as chunks:
                    for chunk in self._plain(chunks, attempt.strategy):
                        staging.write(chunk)
            except QuarantineFormatError:
                staging.close()  # not a readable quarantine entry: try the next one
                continue
            except BaseException:
                staging.close()
                raise
            if staging.sha256 == sha256:
                if attempt.strategy == "locate":
                    attempt.delivered_index = index
                return staging, cause
            staging.close()
            if attempt.strategy != "locate":
                cause = Cause(reason=Reason.HASH_MISMATCH, detail=staging.sha256)
        return None, cause

    def _take_sample(self, stored: Versioned[SampleJob], attempt: Attempt) -> Outcome:
        """Get the verified bytes into staging and hand them to Joe."""
        ctx, job = self._ctx, stored.record
        assert job.sha256 is not None
        found, cause = self._stage(attempt, job.sha256)
        if found is None:
            return self._attempt_failed(stored, attempt, cause)
        with found as staging:
            if attempt.outcome != "collected" or job.state != JobState.SUBMIT or job.submission is None:
                newly_collected = attempt.outcome != "collected"
                delivered = self._delivered(staging.size, attempt)

                def write(changes: Changes) -> None:
                    if newly_collected:
                        attempt.outcome = "collected"
                        attempt.ended_at = ctx.now()
                        changes.record(job.key, "collect", "collected", delivered)
                        if attempt.strategy in _SCRIPTED:
                            schedule_cleanup(ctx, changes, attempt.machine_id, attempt.nonce)
                    self._jobs.start_submission(changes, stored)

                self._jobs.commit_rebased(stored, write)
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

    def _plain(self, chunks: Iterator[bytes], strategy: Strategy) -> Iterator[bytes]:
        """The sample's bytes from what GetFile returns: as is, refanged (the collect script's
        sample.bin), or decoded from Defender's encrypted entry (the locate strategy)."""
        if strategy == "locate":
            yield from decode_resource(chunks, self._ctx.config.max_sample_bytes)
            return
        if strategy not in _SCRIPTED:
            yield from chunks
            return
        refanger = contract.Refanger()
        for chunk in chunks:
            yield refanger.feed(chunk)

    @staticmethod
    def _delivered(size: int, attempt: Attempt) -> str:
        """The history line that says which strategy delivered the file."""
        how = {
            "getfile": "GetFile on the evidence path",
            "locate": "the read-only locator; the encrypted quarantine entry decoded here",
            "quarantine": "the collect script decoding the quarantine on the endpoint",
            "restore": "MpCmdRun -Restore (AllowQuarantineRestore)",
        }[attempt.strategy]
        return f"{size} bytes from {attempt.machine_id} by {attempt.strategy}: {how}"

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
        if outcome.status == "unsafe_folder":
            return Cause(reason=Reason.WORK_FOLDER_UNSAFE, detail=outcome.message)
        return Cause(reason=Reason.SCRIPT_FAILED, detail=outcome.message or outcome.status)

    def _failure_cause(self, attempt: Attempt, action: LiveResponseAction) -> Cause:
        if attempt.strategy in _SCRIPTED and action.status == ActionStatus.FAILED:
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
            if attempt.strategy in _SCRIPTED and attempt.action_id is not None:
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
        quarantine = [a for a in job.attempts if a.strategy != "getfile"]
        if quarantine and all(
            a.failure is not None and a.failure.reason == Reason.QUARANTINE_NOT_FOUND for a in quarantine
        ):
            return Cause(
                reason=Reason.QUARANTINE_NOT_FOUND_ANYWHERE, detail=f" ({'; '.join(failures)})" if failures else ""
            )
        return Cause(reason=Reason.NOT_COLLECTED, detail="; ".join(failures) or "no way to reach it")
