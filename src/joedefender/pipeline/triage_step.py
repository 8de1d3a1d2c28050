"""Triage: read the alert, apply the filters, and attach its evidence to sample jobs."""

from __future__ import annotations

from joedefender.clients.mde.errors import NotFoundError
from joedefender.domain.jobs import AlertSampleLink, AlertState, Candidate, JobState, SampleJob, link_key
from joedefender.domain.samples import FileEvidence, UrlEvidence
from joedefender.domain.triage import triage
from joedefender.pipeline.context import DONE, Context, Outcome
from joedefender.pipeline.records import Versioned
from joedefender.stores.base import VersionConflict


def sample_key(job_key: str) -> str:
    return f"sample:{job_key}"


def comment_key(link: str) -> str:
    return f"comment:{link}"


class TriageStep:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, alert_id: str) -> Outcome:
        ctx = self._ctx
        stored = ctx.alerts.get(alert_id)
        if stored is None or stored.record.state != AlertState.RECEIVED:
            return DONE
        subject = f"alert:{alert_id}"
        try:
            alert = ctx.defender.get_alert(alert_id)
        except NotFoundError:
            stored.record.state = AlertState.FAILED
            stored.record.reason = "Defender does not know this alert id"
            ctx.alerts.save(stored)
            ctx.record(subject, "triage", "failed", stored.record.reason)
            return DONE
        decision = triage(alert, ctx.config.filters)
        stored.record.triaged_at = ctx.now()
        for note in decision.skipped_evidence:
            ctx.record(subject, "triage", "evidence skipped", note)
        if not decision.accepted:
            stored.record.state = AlertState.SKIPPED
            stored.record.reason = decision.reason
            ctx.alerts.save(stored)
            ctx.record(subject, "triage", "skipped", decision.reason)
            return DONE
        keys = [self._attach_file(f) for f in decision.files] + [self._attach_url(u) for u in decision.urls]
        stored.record.state = AlertState.ACCEPTED
        stored.record.reason = decision.reason
        stored.record.samples = keys
        ctx.alerts.save(stored)
        ctx.record(subject, "triage", "accepted", decision.reason)
        return DONE

    def _attach_file(self, evidence: FileEvidence) -> str:
        key = evidence.key.id
        candidate = (
            Candidate(
                machine_id=evidence.machine_id,
                alert_id=evidence.alert_id,
                path=evidence.path,
                file_name=evidence.file_name,
                detection_source=evidence.detection_source,
                detection_status=evidence.detection_status,
                threat_name=evidence.threat_name,
            )
            if evidence.machine_id
            else None
        )
        now = self._ctx.now()
        job = SampleJob(
            key=key,
            kind="file",
            sha256=evidence.sha256,
            file_name=evidence.file_name,
            created_at=now,
            updated_at=now,
            candidates=[candidate] if candidate else [],
        )
        self._join(job, candidate)
        self._link(evidence.alert_id, key)
        return key

    def _attach_url(self, evidence: UrlEvidence) -> str:
        key = evidence.key.id
        now = self._ctx.now()
        job = SampleJob(key=key, kind="url", url=evidence.key.value, created_at=now, updated_at=now)
        self._join(job, None)
        self._link(evidence.alert_id, key)
        return key

    def _join(self, new_job: SampleJob, candidate: Candidate | None) -> None:
        """Create the sample job, or join the one that exists (one sample, one analysis)."""
        ctx = self._ctx
        if ctx.jobs.create(new_job.key, new_job) is not None:
            ctx.record(new_job.key, "job", "created", new_job.sha256 or new_job.url or "")
            ctx.enqueue(sample_key(new_job.key))
            return
        for _ in range(20):
            stored = ctx.jobs.get(new_job.key)
            assert stored is not None
            job = stored.record
            changed = candidate is not None and job.add_candidate(candidate)
            reopen = (
                changed
                and job.state == JobState.FAILED
                and candidate is not None
                and all(a.machine_id != candidate.machine_id for a in job.attempts)
            )
            if reopen:
                job.state, job.failure, job.waiting_since = JobState.COLLECT, None, None
            if not changed:
                if not job.state.final:
                    # A triage retried after a crash between creating the job and queueing it.
                    ctx.enqueue(sample_key(job.key))
                return
            try:
                self._save(stored)
            except VersionConflict:
                continue
            ctx.record(job.key, "job", "joined", f"alert {candidate.alert_id if candidate else ''}")
            if reopen:
                ctx.record(job.key, "job", "reopened", "a new machine carries the file")
                ctx.enqueue(sample_key(job.key))
            elif not job.state.final:
                ctx.enqueue(sample_key(job.key))
            return
        raise VersionConflict("job", new_job.key, -1)

    def _save(self, stored: Versioned[SampleJob]) -> None:
        stored.record.updated_at = self._ctx.now()
        self._ctx.jobs.save(stored)

    def _link(self, alert_id: str, key: str) -> None:
        ctx = self._ctx
        link = link_key(alert_id, key)
        ctx.links.create(link, AlertSampleLink(alert_id=alert_id, sample_key=key))
        # A job that is already final will not announce itself again: write back now.
        job = ctx.jobs.get(key)
        if job is not None and job.record.state.final:
            ctx.enqueue(comment_key(link))
