"""Resolve: a file a command line named, collected by its path and hashed, becomes the sample of
that hash. Each alert the path job carries is attached to the job of the hash (created with the
collection made here, so its file is not fetched from the machine again; or joined, when that
hash has a job already: one sample, one submission, one comment per alert), its link here marked
`moved`; then the path job is `resolved`.

Each alert is handed over in a unit of work of its own, and handing one over twice changes
nothing, so a crash part-way is mended by the next try. An alert that joins the path job while
this runs makes the last save conflict, and the step runs again for it.
"""

from __future__ import annotations

from joedefender.domain.jobs import AlertSampleLink, Attempt, LinkState, SampleJob
from joedefender.domain.keys import alert_subject, link_prefix
from joedefender.domain.samples import SampleKey
from joedefender.pipeline.context import Context
from joedefender.pipeline.records import Versioned
from joedefender.pipeline.sample.attach import Sighting, attach, file_job
from joedefender.pipeline.sample.handler import Result
from joedefender.pipeline.sample.ledger import JobLedger
from joedefender.pipeline.verdicts.incidents import note_samples


class Resolve:
    def __init__(self, ctx: Context, ledger: JobLedger) -> None:
        self._ctx = ctx
        self._ledger = ledger

    def advance(self, stored: Versioned[SampleJob]) -> Result:
        job = stored.record
        assert job.sha256 is not None  # the collection that moved it here recorded the hash
        key = SampleKey.for_file(job.sha256)
        collected = [a.model_copy() for a in job.attempts if a.outcome == "collected"][-1:]
        for link in self._ctx.links.list(prefix=link_prefix(job.key)):
            if not link.record.state.settled:
                self._hand_over(job, key, link, collected)
        return self._ledger.resolved(stored, key.id)

    def _hand_over(
        self, job: SampleJob, key: SampleKey, link: Versioned[AlertSampleLink], collected: list[Attempt]
    ) -> None:
        """Attach the link's alert to the job of `key`, in one unit of work with the link's move."""
        ctx = self._ctx
        alert_id = link.record.alert_id
        candidate = next((c for c in job.candidates if c.alert_id == alert_id), None)
        alert = ctx.alerts.get(alert_id)
        # The alert's incident (with verdicts on incidents) follows the file to its hash's job.
        incident = alert.record.incident_id if alert is not None and job.incidents else None
        sighting = Sighting(
            key, file_job(key, job.file_name, ctx.now(), collected), candidate, link.record.origin, incident
        )
        with ctx.changes() as changes:
            joined = attach(ctx, changes, alert_id, sighting)
            if incident is not None:
                note_samples(ctx, changes, incident, [joined])
            link.record.state = LinkState.MOVED
            changes.save(link)
            if alert is not None and joined not in alert.record.samples:
                alert.record.samples.append(joined)
                changes.save(alert)
            changes.record(alert_subject(alert_id), "resolve", "moved", f"{job.key} is {joined}")
