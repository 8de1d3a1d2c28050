"""An alert attached to a sample job: the job created, or the one that exists joined (one sample,
one analysis), and the (alert, sample) link made.

Triage attaches each sample of an alert's evidence; a path job that learnt its file's hash
attaches its alerts to the job of that hash (`resolve`). A path job that did so already sends
every alert that names the same file afterwards straight to that job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from joedefender.domain.jobs import AlertSampleLink, Attempt, Candidate, JobState, SampleJob
from joedefender.domain.keys import comment_key, link_key, sample_work_key
from joedefender.domain.origins import Origin
from joedefender.domain.samples import SampleKey
from joedefender.pipeline.context import Context
from joedefender.pipeline.records import Changes
from joedefender.pipeline.verdicts.indicators import schedule_indicators
from joedefender.pipeline.verdicts.writeback import late_joiners_wait

_AHEAD = 3600.0  # nominal seconds a new sample job's first step is put ahead in the queue


@dataclass(frozen=True)
class Sighting:
    """One alert's view of a sample: its job (created as `job` when there is none), the machine
    that carries it, and how the alert named it."""

    key: SampleKey
    job: SampleJob
    candidate: Candidate | None = None
    origin: Origin | None = None
    incident: str | None = None  # the alert's incident, with verdicts on incidents: the job wakes it when it ends


def file_job(key: SampleKey, file_name: str | None, now: float, attempts: Sequence[Attempt] = ()) -> SampleJob:
    """A new job for a file by its hash (`attempts`: a collection made already, by its path)."""
    return SampleJob(
        key=key.id,
        kind="file",
        sha256=key.value,
        file_name=file_name,
        created_at=now,
        updated_at=now,
        attempts=list(attempts),
    )


def attach(
    ctx: Context, changes: Changes, alert_id: str, sighting: Sighting, linked: Collection[str] | None = None
) -> str:
    """Put into `changes` what links the alert to the sample's job; the key of the job it joined.
    `linked`: the sample keys the alert is known to be linked to (its record's), so that whether
    the link exists is not read (a link made meanwhile fails the commit, and the caller tries
    again without); None: read it."""
    existing = ctx.jobs.get(sighting.key.id)
    if existing is not None and existing.record.state == JobState.RESOLVED:
        sha256 = existing.record.sha256
        assert sha256 is not None  # a path job resolves once its file is hashed
        key = SampleKey.for_file(sha256)
        redirected = file_job(key, existing.record.file_name, ctx.now())
        return attach(ctx, changes, alert_id, dataclasses.replace(sighting, key=key, job=redirected), linked)
    job_key = sighting.key.id
    final = existing is not None and _join(ctx, changes, alert_id, sighting, existing.record)
    if existing is None:
        new_job = sighting.job
        if sighting.candidate is not None:
            new_job.candidates.append(sighting.candidate)
        if sighting.incident is not None and sighting.incident not in new_job.incidents:
            new_job.incidents.append(sighting.incident)
        changes.create(ctx.jobs, job_key, new_job)
        changes.record(job_key, "job", "created", sighting.key.value)
        # Ahead of the alerts still waiting for triage: the job's collection and analysis are
        # the long pole of an outbreak, the triage of the other alerts can go on meanwhile.
        changes.enqueue(sample_work_key(job_key), -_AHEAD)
    else:
        # Saved even when unchanged: the version check makes a job that ends meanwhile (and
        # announces itself to the links it knows) conflict with the link made here.
        changes.save(existing)
    link = link_key(alert_id, job_key)
    joined_alert = job_key not in linked if linked is not None else ctx.links.get(link) is None
    if joined_alert:
        changes.create(ctx.links, link, AlertSampleLink(alert_id=alert_id, sample_key=job_key, origin=sighting.origin))
    if final:
        # A job that has ended will not announce itself again: ask for the write-back, which
        # waits for the next batch of the sample so that late alerts are written together.
        assert existing is not None
        changes.enqueue(comment_key(job_key), late_joiners_wait(ctx))
        if joined_alert:
            schedule_indicators(ctx, changes, existing.record, alert_id)
    return job_key


def _join(ctx: Context, changes: Changes, alert_id: str, sighting: Sighting, job: SampleJob) -> bool:
    """Add the alert's machine to the job (reopening it if it failed on other machines only);
    whether the job has ended."""
    candidate = sighting.candidate
    machines = {c.machine_id for c in job.candidates}
    joined = candidate is not None and job.add_candidate(candidate)
    if sighting.incident is not None and sighting.incident not in job.incidents:
        job.incidents.append(sighting.incident)
    new_machine = candidate is not None and candidate.machine_id not in machines
    reopen = (
        joined
        and job.state == JobState.FAILED
        and candidate is not None
        and all(a.machine_id != candidate.machine_id for a in job.attempts)
    )
    if reopen:
        job.move_to(JobState.COLLECT)
        job.failure, job.waiting_since = None, None
    job.updated_at = ctx.now()
    if joined:
        changes.record(job.key, "job", "joined", f"alert {alert_id}")
    if reopen:
        changes.record(job.key, "job", "reopened", "a new machine carries the file")
    if joined and new_machine and job.state == JobState.COLLECT:
        # Waiting for a machine (offline, or busy with our own or someone else's session): the
        # new one may be free now. Another alert on a machine the job has, or a job that is not
        # waiting for one (its lookup, an action running, its analysis), plans with every
        # candidate at its next step anyway: waking it for each alert of an outbreak would run
        # its step once per alert.
        changes.enqueue(sample_work_key(job.key))
    return job.state.final
