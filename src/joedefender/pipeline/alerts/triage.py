"""Triage: read the alert, apply the filters, and attach its evidence to sample jobs.

Everything triage writes (the alert's new state, new or joined sample jobs, the (alert, sample)
links, history and the next work items) is one unit of work: a crash or a lost race leaves
either all of it or none, and the step simply runs again.
"""

from __future__ import annotations

from dataclasses import replace

from joedefender.domain.alerts import Alert
from joedefender.domain.errors import NotFound
from joedefender.domain.jobs import AlertRecord, AlertState, Candidate, JobState, SampleJob
from joedefender.domain.keys import alert_subject
from joedefender.domain.process_evidence import origin, target_origin
from joedefender.domain.reasons import Cause, Reason
from joedefender.domain.samples import SampleKey
from joedefender.domain.triage import TriageDecision, triage
from joedefender.domain.windows_paths import file_name
from joedefender.pipeline.alerts.reads import AlertReads
from joedefender.pipeline.context import DONE, Context, Outcome
from joedefender.pipeline.ports import VersionConflict
from joedefender.pipeline.records import Versioned
from joedefender.pipeline.sample.attach import Sighting, attach, file_job
from joedefender.pipeline.verdicts.incidents import incident_of, join_incident

_RACES = 20
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
        decision = triage(alert, ctx.config.filters, ctx.config.process)
        if decision.cause is not None and stored.record.samples:
            # Triaged again (late evidence) and no longer passing: what it carried stays as it was.
            self._end(stored, AlertState.ACCEPTED, None, "nothing new", decision.cause.text)
            return DONE
        if decision.cause is not None:
            self._end(
                stored, AlertState.SKIPPED, decision.cause, "skipped", decision.cause.text, decision.skipped_evidence
            )
            return DONE
        linked: list[str] | None = stored.record.samples  # the links it has; after a race, read them
        for _ in range(_RACES):
            try:
                self._accept(stored, alert, decision, linked)
                return DONE
            except VersionConflict:  # a job changed while we joined it: read again, try again
                fresh = ctx.alerts.get(alert_id)
                if fresh is None or fresh.record.state != AlertState.RECEIVED:
                    return DONE
                stored, linked = fresh, None
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

    def _accept(
        self, stored: Versioned[AlertRecord], alert: Alert, decision: TriageDecision, linked: list[str] | None
    ) -> None:
        ctx, record = self._ctx, stored.record
        now = ctx.now()
        subject = alert_subject(record.alert_id)
        sightings = self._sightings(alert, decision, now)
        # A unit of work must fit one store transaction (Azure Tables: 100 entities; a sample is a
        # job and a link): an alert with many samples attaches them in several, the alert's own
        # record last. Attaching is idempotent, so a crash in between is mended by the next try.
        head, last = sightings[:-_SAMPLES_PER_COMMIT], sightings[-_SAMPLES_PER_COMMIT:]
        keys: list[str] = []
        incident = incident_of(ctx, alert)
        for start in range(0, len(head), _SAMPLES_PER_COMMIT):
            with ctx.changes() as changes:
                for sighting in head[start : start + _SAMPLES_PER_COMMIT]:
                    keys.append(attach(ctx, changes, alert.id, replace(sighting, incident=incident), linked))
        with ctx.changes() as changes:
            for sighting in last:
                keys.append(attach(ctx, changes, alert.id, replace(sighting, incident=incident), linked))
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

    @staticmethod
    def _sightings(alert: Alert, decision: TriageDecision, now: float) -> list[Sighting]:
        """What the alert's evidence gives: files (and process images) by hash, URLs, and files
        command lines named, by their path on the process's machine."""
        sightings = [
            Sighting(key, file_job(key, evidence.file_name, now), Candidate.sighted(alert, evidence), origin(evidence))
            for key, evidence in decision.files
        ]
        for key, url in decision.urls:
            sightings.append(Sighting(key, SampleJob(key=key.id, kind="url", url=url, created_at=now, updated_at=now)))
        for target in decision.targets:
            assert target.machine_id is not None  # triage keeps only targets on a named machine
            key = SampleKey.for_path(target.machine_id, target.path)
            path_job = SampleJob(
                key=key.id,
                kind="path",
                file_name=file_name(target.path),
                state=JobState.COLLECT,
                created_at=now,
                updated_at=now,
            )
            sightings.append(Sighting(key, path_job, Candidate.named(alert, target), target_origin(target)))
        return sightings
