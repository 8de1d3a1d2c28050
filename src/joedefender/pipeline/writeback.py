"""Write-back: exactly one comment per (alert, sample).

The intent is saved before the PATCH (the link goes `writing`). A link found `writing` may have
its comment on the alert already (a crash, or a PATCH whose answer was lost), so the alert's
comments are read first and the marker decides; a `pending` link is written straight away, which
saves an alert read, under the 100-a-minute limit, for every comment.
"""

from __future__ import annotations

from joedefender.domain.comments import has_marker, render_failure, render_verdict
from joedefender.domain.jobs import AlertSampleLink, JobState, LinkState, SampleJob
from joedefender.domain.keys import alert_subject, classify_key
from joedefender.pipeline.classify import wants_classification
from joedefender.pipeline.context import DONE, Context, Outcome


def comment_text(job: SampleJob, link: AlertSampleLink) -> str:
    file_name = next((c.file_name for c in job.candidates if c.alert_id == link.alert_id), None)
    file_name = file_name or job.file_name
    subject = job.sha256 or job.url or job.key
    if job.state == JobState.DONE and job.verdict is not None:
        return render_verdict(
            job.verdict,
            sample_key=job.key,
            subject=subject,
            file_name=file_name,
            reused=job.verdict_source == "lookup",
            older=job.older_verdict,
        )
    reason = job.failure.text if job.failure is not None else "unknown error"
    return render_failure(sample_key=job.key, subject=subject, file_name=file_name, reason=reason)


class WriteBackStep:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, link_id: str) -> Outcome:
        ctx = self._ctx
        stored = ctx.links.get(link_id)
        if stored is None or stored.record.state == LinkState.COMMENTED:
            return DONE
        link = stored.record
        job = ctx.jobs.get(link.sample_key)
        if job is None or not job.record.state.final:
            return DONE  # the job announces itself when it ends
        subject = alert_subject(link.alert_id)
        if link.state == LinkState.WRITING and self._already_there(link):
            outcome, detail = "already commented", link.sample_key
        else:
            if link.state != LinkState.WRITING:
                link.state = LinkState.WRITING
                with ctx.changes() as changes:
                    changes.save(stored)
            ctx.defender.add_comment(link.alert_id, comment_text(job.record, link))
            outcome, detail = "commented", f"{link.sample_key} ({job.record.state.value})"
        link.state = LinkState.COMMENTED
        link.commented_at = ctx.now()
        with ctx.changes() as changes:
            changes.save(stored)
            changes.record(subject, "write-back", outcome, detail)
            if wants_classification(ctx, job.record):  # after the comment, never in its way
                changes.enqueue(classify_key(link_id))
        return DONE

    def _already_there(self, link: AlertSampleLink) -> bool:
        alert = self._ctx.defender.get_alert(link.alert_id)
        return has_marker(alert.comments, link.sample_key)
