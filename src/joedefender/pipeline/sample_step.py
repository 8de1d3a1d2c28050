"""The sample job's state machine: lookup, collection, submission, waiting for the verdict.

Each call does a bounded amount of work (a few API calls) and commits what it learnt in one unit
of work, then says when to look again. Side effects are recorded as intents first (an attempt's
nonce, a submission's nonce) so a retried step finds what a crashed one did instead of doing it
twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from joedefender.domain.jobs import JobState, SampleJob, Submission
from joedefender.domain.keys import comment_key
from joedefender.domain.reasons import Cause, Reason
from joedefender.pipeline.collection import Collector
from joedefender.pipeline.context import DONE, Context, Outcome, again
from joedefender.pipeline.indicators import schedule_indicators
from joedefender.pipeline.pacing import PollPlan
from joedefender.pipeline.ports import VersionConflict
from joedefender.pipeline.quota import parked_until, waits_for_quota
from joedefender.pipeline.records import Changes, Versioned
from joedefender.pipeline.submission import new_nonce, submission_marker, submission_tags

T = TypeVar("T")
_REBASES = 10


class SampleStep:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._collector = Collector(ctx, self)
        self._analysis_polls = PollPlan()

    def __call__(self, key: str) -> Outcome:
        stored = self._ctx.jobs.get(key)
        if stored is None:
            return DONE
        state = stored.record.state
        parked = parked_until(self._ctx.store, self._ctx.now())
        if parked is not None and waits_for_quota(stored.record):
            return again(parked - self._ctx.now())  # no collection or submission while Joe's quota is used up
        if state == JobState.LOOKUP:
            return self._lookup(stored)
        if state in (JobState.COLLECT, JobState.COLLECTING):
            return self._collector.step(stored)
        if state == JobState.SUBMIT:
            return self._submit(stored)
        if state == JobState.ANALYSING:
            return self._poll(stored)
        with self._ctx.changes() as changes:
            self.announce(changes, stored)
        return DONE

    # -- shared by the collector ------------------------------------------------------------

    def save(self, changes: Changes, stored: Versioned[SampleJob]) -> None:
        stored.record.updated_at = self._ctx.now()
        changes.save(stored)

    def commit_rebased(self, stored: Versioned[SampleJob], write: Callable[[Changes], T]) -> T:
        """Commit what a call to Defender or Joe did (`write` puts it into the unit of work). In
        an outbreak, triage saves the job for every alert that joins it; such a save meanwhile
        only adds candidates, so the job is rebased on it and the commit tried again, instead of
        the step running again to find its own effect by its marker."""
        for _ in range(_REBASES):
            self._rebase(stored)
            try:
                with self._ctx.changes() as changes:
                    return write(changes)
            except VersionConflict:
                continue
        raise VersionConflict("job", stored.record.key, stored.doc.version)

    def _rebase(self, stored: Versioned[SampleJob]) -> None:
        """Take the stored job's version and candidates if only joins changed it since `stored`."""
        fresh = self._ctx.jobs.get(stored.record.key)
        if fresh is None or fresh.doc.version == stored.doc.version:
            return
        if _without_joins(fresh.doc.data) == _without_joins(stored.doc.data):
            stored.record.candidates = fresh.record.candidates
            stored.doc = fresh.doc

    def fail(self, stored: Versioned[SampleJob], cause: Cause, changes: Changes | None = None) -> Outcome:
        """End the job as failed (in `changes`, when given, else in a unit of work of its own)."""
        if changes is None:
            with self._ctx.changes() as own:
                return self.fail(stored, cause, own)
        job = stored.record
        job.move_to(JobState.FAILED)
        job.failure = cause
        self.save(changes, stored)
        changes.record(job.key, "job", "failed", cause.text)
        self.announce(changes, stored)
        return DONE

    def announce(self, changes: Changes, stored: Versioned[SampleJob]) -> None:
        """A final job asks for the write-back of its sample, which comments every alert linked
        to it by then (a link made later asks again: triage enqueues it for a final job)."""
        changes.enqueue(comment_key(stored.record.key))

    def start_submission(self, changes: Changes, stored: Versioned[SampleJob]) -> None:
        """Record the intent to submit (with the marker Joe will carry) before submitting."""
        job = stored.record
        job.move_to(JobState.SUBMIT)
        if job.submission is None:
            job.submission = Submission(nonce=new_nonce())
        self.save(changes, stored)

    def submitted(self, stored: Versioned[SampleJob], submission_id: str) -> Outcome:
        job = stored.record
        assert job.submission is not None
        job.submission.submission_id = submission_id
        job.submission.submitted_at = self._ctx.now()
        job.move_to(JobState.ANALYSING)
        job.poll_interval = None

        def write(changes: Changes) -> Outcome:
            changes.record(job.key, "submit", "submitted", f"submission {submission_id}")
            return self._next_poll(changes, stored)

        return self.commit_rebased(stored, write)

    # -- the states --------------------------------------------------------------------------

    def _lookup(self, stored: Versioned[SampleJob]) -> Outcome:
        ctx, job = self._ctx, stored.record
        if job.kind == "file":
            assert job.sha256 is not None
            known = ctx.sandbox.lookup(job.sha256)
        else:
            assert job.url is not None
            known = ctx.sandbox.lookup_url(job.url)
        now = datetime.fromtimestamp(ctx.now(), UTC)
        with ctx.changes() as changes:
            reuse = ctx.config.resubmit.decide(known, now)
            if reuse is not None:
                known_verdict = reuse.verdict
                job.verdict, job.verdict_source = known_verdict, "lookup"
                job.older_verdict = reuse.older_more_severe
                job.move_to(JobState.DONE)
                self.save(changes, stored)
                changes.record(
                    job.key,
                    "lookup",
                    "known",
                    f"{known_verdict.detection} (analysis {known_verdict.webid}), not resubmitted",
                )
                self.announce(changes, stored)
                schedule_indicators(ctx, changes, job)
                return DONE
            detail = "unknown to Joe Sandbox" if not known else f"known, {ctx.config.resubmit.describe()}"
            job.move_to(JobState.COLLECT if job.kind == "file" else JobState.SUBMIT)
            self.save(changes, stored)
            changes.record(job.key, "lookup", "analyse", detail)
        # On at once, in this step: back in the queue it would wait behind every alert still
        # waiting for triage, and in an outbreak the collection is the long pole.
        return self(job.key)

    def _submit(self, stored: Versioned[SampleJob]) -> Outcome:
        ctx, job = self._ctx, stored.record
        if job.submission is not None and job.submission.submission_id is None:
            webid = ctx.sandbox.find_analysis(submission_marker(job))
            if webid is not None:  # a crash came between submitting and recording it
                job.submission.webid = webid
                job.submission.submitted_at = job.submission.submitted_at or ctx.now()
                job.move_to(JobState.ANALYSING)
                with ctx.changes() as changes:
                    changes.record(job.key, "submit", "recovered", f"analysis {webid} found by its marker")
                    return self._next_poll(changes, stored)
        if job.kind == "file":
            return self._collector.resubmit_collected(stored)
        assert job.url is not None
        if job.submission is None:
            with ctx.changes() as changes:
                self.start_submission(changes, stored)
        submission_id = ctx.sandbox.submit_url(
            job.url,
            tags=submission_tags(job),
            comments=submission_marker(job),
        )
        return self.submitted(stored, submission_id)

    def _poll(self, stored: Versioned[SampleJob]) -> Outcome:
        ctx, job = self._ctx, stored.record
        submission = job.submission
        assert submission is not None
        webid = submission.webid
        if submission.submission_id is not None:
            info = ctx.sandbox.submission_info(submission.submission_id)
            finished = info.finished
            if finished and info.webid is None:
                return self.fail(stored, Cause(reason=Reason.NO_ANALYSIS))
            webid = info.webid
        else:
            assert webid is not None
            finished = ctx.sandbox.analysis_status(webid) == "finished"
        started = submission.submitted_at or job.updated_at
        if finished:
            assert webid is not None
            self._analysis_polls.finished((ctx.now() - started) / ctx.config.time_scale)
            verdict = ctx.sandbox.verdict(webid)
            job.verdict, job.verdict_source = verdict, "analysis"
            submission.webid = webid
            job.move_to(JobState.DONE)
            with ctx.changes() as changes:
                self.save(changes, stored)
                changes.record(job.key, "analysis", "finished", f"{verdict.detection}, score {verdict.score}")
                self.announce(changes, stored)
                schedule_indicators(ctx, changes, job)
            return DONE
        if ctx.now() - started > ctx.config.analysis_limit:
            minutes = round(ctx.config.analysis_timeout / 60)
            return self.fail(stored, Cause(reason=Reason.ANALYSIS_TIMEOUT, detail=str(minutes)))
        return again(self._poll_delay(job))  # nothing learnt, nothing written

    def _next_poll(self, changes: Changes, stored: Versioned[SampleJob]) -> Outcome:
        """The first look at a new analysis (the job, saved in `changes`, records the gap)."""
        job = stored.record
        delay = self._poll_delay(job)
        job.poll_interval = delay / self._ctx.config.time_scale
        self.save(changes, stored)
        return again(delay)

    def _poll_delay(self, job: SampleJob) -> float:
        """Real seconds until the next look at the job's analysis (`PollPlan`): Joe documents no
        request rate limit, so only the elapsed time and the shortest recent analysis decide."""
        ctx = self._ctx
        assert job.submission is not None
        started = job.submission.submitted_at or job.updated_at
        elapsed = (ctx.now() - started) / ctx.config.time_scale
        return ctx.config.scaled(self._analysis_polls.next_look(elapsed))


def _without_joins(data: dict[str, Any]) -> dict[str, Any]:
    """A job's stored fields but those a joining alert changes."""
    return {key: value for key, value in data.items() if key not in ("candidates", "updated_at")}
