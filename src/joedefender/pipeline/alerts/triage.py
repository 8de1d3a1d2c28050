"""Triage: read the alert, apply the filters, and attach its evidence to sample jobs.

Everything triage writes (the alert's new state, new or joined sample jobs, the (alert, sample)
links, history and the next work items) is one unit of work: a crash or a lost race leaves
either all of it or none, and the step simply runs again.
"""

from __future__ import annotations

from joedefender.domain.alerts import Alert
from joedefender.domain.errors import NotFound
from joedefender.domain.jobs import AlertRecord, AlertSampleLink, AlertState, Candidate, JobState, SampleJob
from joedefender.domain.keys import alert_subject, comment_key, link_key, sample_work_key
from joedefender.domain.reasons import Cause, Reason
from joedefender.domain.samples import SampleKey
from joedefender.domain.triage import TriageDecision, triage
from joedefender.pipeline.alerts.reads import AlertReads
from joedefender.pipeline.context import DONE, Context, Outcome
from joedefender.pipeline.ports import VersionConflict
from joedefender.pipeline.records import Changes, Versioned
from joedefender.pipeline.verdicts.incidents import incident_of, join_incident
from joedefender.pipeline.verdicts.indicators import schedule_indicators

_RACES = 20
_AHEAD = 3600.0  # nominal seconds a new sample job's first step is put ahead in the queue
_SAMPLES_PER_COMMIT = 40  # two documents each, and the alert: within one Azure Tables transaction


class TriageWork:
    """`triage:<alert id>`."""

    def __init__(self, ctx: Context, reads: AlertReads | None = None) -> None:
        self._ctx = ctx
        self._reads = reads if reads is not None else AlertReads(ctx)

    def give_up(self, alert_id: str, cause: Cause) -> None:
        """The alert's triage failed for good: say so on the alert."""
        alert = self._ctx.alerts.get(alert_id)
        if alert is not None:
            alert.record.state, alert.record.cause = AlertState.FAILED, cause
            with self._ctx.changes() as changes:
                changes.save(alert)
                changes.record(alert_subject(alert_id), "triage", "failed", cause.text)

    def run(self, alert_id: str) -> Outcome:
        ctx = self._ctx
        stored = ctx.alerts.get(alert_id)
        if stored is None or stored.record.state != AlertState.RECEIVED:
            return DONE
        try:
            # The poller's copy, or a bulk read: an alert is read again only when it may have changed.
            alert = stored.record.snapshot or self._reads.read(alert_id)
        except NotFound:
            cause = Cause(reason=Reason.ALERT_UNKNOWN)
            self._end(stored, AlertState.FAILED, cause, "failed", cause.text)
            return DONE
        decision = triage(alert, ctx.config.filters)
        if decision.cause is not None and stored.record.samples:
            # Triaged again (late evidence) and no longer passing: what it carried stays as it was.
            self._end(stored, AlertState.ACCEPTED, None, "nothing new", decision.cause.text)
            return DONE
        if decision.cause is not None:
            self._end(
                stored, AlertState.SKIPPED, decision.cause, "skipped", decision.cause.text, decision.skipped_evidence
            )
            return DONE
        for _ in range(_RACES):
            try:
                self._accept(stored, alert, decision)
                return DONE
            except VersionConflict:  # a job changed while we joined it: read again, try again
                fresh = ctx.alerts.get(alert_id)
                if fresh is None or fresh.record.state != AlertState.RECEIVED:
                    return DONE
                stored = fresh
        raise VersionConflict("alert", alert_id, stored.doc.version)

    def _end(
        self,
        stored: Versioned[AlertRecord],
        state: AlertState,
        cause: Cause | None,
        outcome: str,
        detail: str,
        notes: tuple[str, ...] = (),
    ) -> None:
        record = stored.record
        record.state, record.cause, record.triaged_at = state, cause, self._ctx.now()
        record.snapshot = None
        subject = alert_subject(record.alert_id)
        with self._ctx.changes() as changes:
            changes.save(stored)
            for note in notes:
                changes.record(subject, "triage", "evidence skipped", note)
            changes.record(subject, "triage", outcome, detail)

    def _accept(self, stored: Versioned[AlertRecord], alert: Alert, decision: TriageDecision) -> None:
        ctx, record = self._ctx, stored.record
        now = ctx.now()
        subject = alert_subject(record.alert_id)
        samples: list[tuple[SampleKey, SampleJob, Candidate | None]] = []
        for key, evidence in decision.files:
            new_job = SampleJob(
                key=key.id, kind="file", sha256=key.value, file_name=evidence.file_name, created_at=now, updated_at=now
            )
            samples.append((key, new_job, Candidate.sighted(alert, evidence)))
        for key, url in decision.urls:
            url_job = SampleJob(key=key.id, kind="url", url=url, created_at=now, updated_at=now)
            samples.append((key, url_job, None))
        # A unit of work must fit one store transaction (Azure Tables: 100 entities; a sample is a
        # job and a link): an alert with many samples attaches them in several, the alert's own
        # record last. Attaching is idempotent, so a crash in between is mended by the next try.
        head, last = samples[:-_SAMPLES_PER_COMMIT], samples[-_SAMPLES_PER_COMMIT:]
        keys: list[str] = []
        incident = incident_of(ctx, alert)
        for start in range(0, len(head), _SAMPLES_PER_COMMIT):
            with ctx.changes() as changes:
                for key, new_job, candidate in head[start : start + _SAMPLES_PER_COMMIT]:
                    keys.append(self._attach(changes, alert.id, key, new_job, candidate, incident))
        with ctx.changes() as changes:
            for key, new_job, candidate in last:
                keys.append(self._attach(changes, alert.id, key, new_job, candidate, incident))
            join_incident(ctx, changes, alert, keys)
            for note in decision.skipped_evidence:
                changes.record(subject, "triage", "evidence skipped", note)
            new = [key for key in keys if key not in record.samples]
            if record.samples and new:
                changes.record(subject, "triage", "new evidence", ", ".join(new))
            record.state, record.cause, record.summary = AlertState.ACCEPTED, None, decision.summary
            record.samples, record.triaged_at = list(dict.fromkeys([*record.samples, *keys])), now
            record.incident_id = incident or record.incident_id
            record.snapshot = None
            changes.save(stored)
            changes.record(subject, "triage", "accepted", decision.summary)

    def _attach(
        self,
        changes: Changes,
        alert_id: str,
        key: SampleKey,
        new_job: SampleJob,
        candidate: Candidate | None,
        incident: str | None,
    ) -> str:
        """Create the sample job, or join the one that exists (one sample, one analysis), and link
        it; the job notes the alert's incident (`incident`), whose verdicts it wakes when it ends."""
        ctx = self._ctx
        job_key = key.id
        existing = ctx.jobs.get(job_key)
        final = False
        if existing is None:
            if candidate is not None:
                new_job.candidates.append(candidate)
            new_job.incidents = [incident] if incident is not None else []
            changes.create(ctx.jobs, job_key, new_job)
            changes.record(job_key, "job", "created", key.value)
            # Ahead of the alerts still waiting for triage: the job's collection and analysis are
            # the long pole of an outbreak, the triage of the other alerts can go on meanwhile.
            changes.enqueue(sample_work_key(job_key), -_AHEAD)
        else:
            job = existing.record
            joined = candidate is not None and job.add_candidate(candidate)
            if incident is not None and incident not in job.incidents:
                job.incidents.append(incident)
            reopen = (
                joined
                and job.state == JobState.FAILED
                and candidate is not None
                and all(a.machine_id != candidate.machine_id for a in job.attempts)
            )
            if reopen:
                job.move_to(JobState.COLLECT)
                job.failure, job.waiting_since = None, None
            # Saved even when unchanged: the version check makes a job that ends meanwhile
            # (and announces itself to the links it knows) conflict with the link made here.
            job.updated_at = ctx.now()
            changes.save(existing)
            if joined:
                changes.record(job_key, "job", "joined", f"alert {alert_id}")
            if reopen:
                changes.record(job_key, "job", "reopened", "a new machine carries the file")
            if not job.state.final and joined:
                changes.enqueue(sample_work_key(job_key))
            final = job.state.final
        link = link_key(alert_id, job_key)
        joined_alert = ctx.links.get(link) is None
        if joined_alert:
            changes.create(ctx.links, link, AlertSampleLink(alert_id=alert_id, sample_key=job_key))
        if final:  # a job that has ended will not announce itself again: write back now
            changes.enqueue(comment_key(job_key))
            if existing is not None and joined_alert:
                schedule_indicators(ctx, changes, existing.record, alert_id)
        return job_key
