"""Submission: the file (streamed from the staging handed over) or the URL to Joe Sandbox,
tagged like JoeAz's submissions and carrying the job's marker, so a crash between submitting
and recording it is mended by a look for the marker, not by a second submission. A file goes
to the Joe systems of the platform of the device it was collected from."""

from __future__ import annotations

from joedefender.domain.jobs import SampleJob
from joedefender.domain.markers import mark
from joedefender.domain.platforms import Platform
from joedefender.pipeline.collection.staging import SampleStaging
from joedefender.pipeline.context import Context
from joedefender.pipeline.records import Versioned
from joedefender.pipeline.sample.handler import Refetch, Result
from joedefender.pipeline.sample.ledger import JobLedger


class Submit:
    def __init__(self, ctx: Context, ledger: JobLedger) -> None:
        self._ctx = ctx
        self._ledger = ledger

    def advance(self, stored: Versioned[SampleJob]) -> Result:
        """Submit what is due: after a crash, first look for the submission it may have made."""
        ctx, job = self._ctx, stored.record
        if job.submission is not None and job.submission.submission_id is None:
            webid = ctx.sandbox.find_analysis(submission_marker(job))
            if webid is not None:
                return self._ledger.recovered(stored, webid)
        if job.kind == "file":
            return Refetch()  # the bytes are not kept: fetch them again from Defender
        assert job.url is not None
        if job.submission is None:
            self._ledger.commit(stored, lambda changes: self._ledger.start_submission(changes, stored))
        submission_id = ctx.sandbox.submit_url(job.url, tags=submission_tags(job), comments=submission_marker(job))
        return self._ledger.submitted(stored, submission_id)

    def file(self, stored: Versioned[SampleJob], staging: SampleStaging, file_name: str) -> Result:
        """Submit the verified file the collection recorded (its intent saved already), and drop
        it: the staging handed over is closed here, whatever happens."""
        job = stored.record
        with staging:
            submission_id = self._ctx.sandbox.submit_file(
                staging.reader(),
                file_name,
                tags=submission_tags(job),
                comments=submission_marker(job),
                platform=collected_from(job),
            )
        return self._ledger.submitted(stored, submission_id)


def submission_marker(job: SampleJob) -> str:
    assert job.submission is not None
    return mark(job.submission.nonce)


def collected_from(job: SampleJob) -> Platform:
    """The platform of the device the file was collected from, which chooses Joe's systems."""
    collected = [a for a in job.attempts if a.outcome == "collected"]
    return job.platform_of(collected[-1].machine_id) if collected else Platform.WINDOWS


def submission_tags(job: SampleJob) -> list[str]:
    """JoeAz's tags (MSDefender-AV/EDR/URL-Alert, the threat) plus the alert and machine."""
    tags = ["joedefender"]
    if job.kind == "url":
        tags.append("MSDefender-URL-Alert")
    for candidate in job.candidates[:1]:
        source = "AV" if candidate.detection_source.lower() == "windowsdefenderav" else "EDR"
        tags.append(f"MSDefender-{source}-Alert")
        tags.append(f"alert-{candidate.alert_id}")
        tags.append(f"machine-{candidate.machine_id}")
        if candidate.threat_name:
            tags.append(candidate.threat_name)
    return tags
