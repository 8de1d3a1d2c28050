"""The sample job's ledger: every write a job's handlers make, and its submission bookkeeping.

Side effects are recorded as intents first (an attempt's nonce, a submission's nonce) so a
retried step finds what a crashed one did instead of doing it twice. Every write of the job is
committed rebased (`commit`): in an outbreak, triage saves the job for every alert that joins
it, and such a save only adds candidates, so the job is rebased on it and the commit tried
again, instead of the step running again (its looks, downloads and lookups with it) to find its
own effect by its marker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from joedefender.domain.jobs import JobState, SampleJob, Submission
from joedefender.domain.keys import comment_key
from joedefender.domain.markers import new_nonce
from joedefender.domain.reasons import Cause
from joedefender.pipeline.context import DONE, Context, Outcome, again
from joedefender.pipeline.ports import VersionConflict
from joedefender.pipeline.records import Changes, Versioned
from joedefender.pipeline.sample.looks import AnalysisLooks
from joedefender.pipeline.verdicts.incidents import wake_incidents
from joedefender.pipeline.verdicts.indicators import schedule_indicators

T = TypeVar("T")
_REBASES = 10


class JobLedger:
    def __init__(self, ctx: Context, looks: AnalysisLooks) -> None:
        self._ctx = ctx
        self._looks = looks

    def save(self, changes: Changes, stored: Versioned[SampleJob]) -> None:
        stored.record.updated_at = self._ctx.now()
        changes.save(stored)

    def commit(self, stored: Versioned[SampleJob], write: Callable[[Changes], T]) -> T:
        """Commit what a step did to the job (`write` puts it into the unit of work, and may be
        asked again), rebased on joins that came meanwhile: the job is read again only when the
        commit found it changed."""
        for attempt in range(_REBASES):
            if attempt:
                self._rebase(stored)
            try:
                with self._ctx.changes() as changes:
                    return write(changes)
            except VersionConflict:
                continue
        raise VersionConflict("job", stored.record.key, stored.doc.version)

    def saved(self, stored: Versioned[SampleJob], *note: str) -> None:
        """Save the job as it is, with a history line (step, outcome, detail) when given."""

        def write(changes: Changes) -> None:
            self.save(changes, stored)
            if note:
                changes.record(stored.record.key, *note)

        self.commit(stored, write)

    def _rebase(self, stored: Versioned[SampleJob]) -> None:
        """Take the stored job's version, candidates and incidents if only joins changed it since `stored`."""
        fresh = self._ctx.jobs.get(stored.record.key)
        if fresh is None or fresh.doc.version == stored.doc.version:
            return
        if _without_joins(fresh.doc.data) == _without_joins(stored.doc.data):
            stored.record.candidates = fresh.record.candidates
            stored.record.incidents = fresh.record.incidents
            stored.doc = fresh.doc

    def announce(self, changes: Changes, stored: Versioned[SampleJob]) -> None:
        """A final job asks for the write-back of its sample, which comments every alert linked
        to it by then (a link made later asks again: triage enqueues it for a final job), and
        wakes the verdicts of its incidents."""
        changes.enqueue(comment_key(stored.record.key))
        wake_incidents(changes, stored.record)

    def fail(self, stored: Versioned[SampleJob], cause: Cause, changes: Changes | None = None) -> Outcome:
        """End the job as failed (in `changes`, when given, else in a unit of work of its own)."""
        if changes is None:
            return self.commit(stored, lambda own: self.fail(stored, cause, own))
        job = stored.record
        job.move_to(JobState.FAILED)
        job.failure = cause
        self.save(changes, stored)
        changes.record(job.key, "job", "failed", cause.text)
        self.announce(changes, stored)
        return DONE

    def done(self, stored: Versioned[SampleJob], step: str, outcome: str, detail: str) -> Outcome:
        """End the job with the verdict its handler set, ask for its comments and indicators."""
        job = stored.record
        job.move_to(JobState.DONE)

        def write(changes: Changes) -> Outcome:
            self.save(changes, stored)
            changes.record(job.key, step, outcome, detail)
            self.announce(changes, stored)
            schedule_indicators(self._ctx, changes, job)
            return DONE

        return self.commit(stored, write)

    def collected(self, changes: Changes, stored: Versioned[SampleJob], sha256: str) -> None:
        """The file is collected and hashed: submit it; or, for a file named by its path, learn
        its hash and hand it on (`resolve`)."""
        job = stored.record
        if job.kind != "path":
            self.start_submission(changes, stored)
            return
        job.sha256 = sha256
        job.move_to(JobState.RESOLVE)
        self.save(changes, stored)
        changes.record(job.key, "collect", "hashed", f"the file at its path is sha256:{sha256}")

    def resolved(self, stored: Versioned[SampleJob], sample_key: str) -> Outcome:
        """The job of the file's hash took this path job's alerts over: nothing is left to do here."""
        stored.record.move_to(JobState.RESOLVED)
        self.saved(stored, "resolve", "resolved", f"{sample_key} carries on")
        return DONE

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
            return self._first_look(changes, stored)

        return self.commit(stored, write)

    def recovered(self, stored: Versioned[SampleJob], webid: str) -> Outcome:
        """A crash came between submitting and recording it: the analysis was found by its marker."""
        job = stored.record
        assert job.submission is not None
        job.submission.webid = webid
        job.submission.submitted_at = job.submission.submitted_at or self._ctx.now()
        job.move_to(JobState.ANALYSING)

        def write(changes: Changes) -> Outcome:
            changes.record(job.key, "submit", "recovered", f"analysis {webid} found by its marker")
            return self._first_look(changes, stored)

        return self.commit(stored, write)

    def _first_look(self, changes: Changes, stored: Versioned[SampleJob]) -> Outcome:
        """The first look at a new analysis (the job, saved in `changes`, records the gap)."""
        job = stored.record
        delay = self._looks.delay(job)
        job.poll_interval = delay
        self.save(changes, stored)
        return again(self._ctx.clock.real(delay))


def _without_joins(data: dict[str, Any]) -> dict[str, Any]:
    """A job's stored fields but those a joining alert changes."""
    return {key: value for key, value in data.items() if key not in ("candidates", "incidents", "updated_at")}
