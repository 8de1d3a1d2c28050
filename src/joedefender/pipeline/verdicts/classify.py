"""The optional alert classification: a malicious verdict marks the alert TruePositive / Malware.

Off unless `DefenderAlertClassification` is set. It runs after the comment, as its own step, so
it never holds the comment up; it reads the alert first and leaves alone any alert an analyst has
classified or resolved (their decision wins, and a resolved alert is closed business).
"""

from __future__ import annotations

from joedefender.domain.jobs import JobState, SampleJob
from joedefender.domain.keys import alert_subject
from joedefender.domain.reasons import Cause
from joedefender.pipeline.context import DONE, Context, Outcome

CLASSIFICATION = "TruePositive"
DETERMINATION = "Malware"


def wants_classification(ctx: Context, job: SampleJob) -> bool:
    return (
        ctx.config.classify_alerts
        and job.state == JobState.DONE
        and job.verdict is not None
        and job.verdict.detection == "malicious"
    )


class ClassifyWork:
    """`classify:<link key>`."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def give_up(self, link_id: str, cause: Cause) -> None:
        """Nothing to end: an alert left unclassified is the analyst's to classify."""

    def run(self, link_id: str) -> Outcome:
        ctx = self._ctx
        stored = ctx.links.get(link_id)
        if stored is None or stored.record.classified_at is not None:
            return DONE
        link = stored.record
        job = ctx.jobs.get(link.sample_key)
        if job is None or not wants_classification(ctx, job.record):
            return DONE
        alert = ctx.defender.get_alert(link.alert_id)
        if (alert.classification, alert.determination) == (CLASSIFICATION, DETERMINATION):
            outcome, detail = "classified", f"{CLASSIFICATION} / {DETERMINATION} (found set already)"
        elif (alert.classification or "").strip():
            outcome = "left alone"
            detail = f"already classified {alert.classification} / {alert.determination or 'no determination'}"
        elif (alert.status or "").lower() == "resolved":
            outcome, detail = "left alone", "the alert is resolved"
        else:
            ctx.defender.classify_alert(link.alert_id, CLASSIFICATION, DETERMINATION)
            outcome, detail = "classified", f"{CLASSIFICATION} / {DETERMINATION} (malicious: {link.sample_key})"
        link.classified_at = ctx.now()
        with ctx.changes() as changes:
            changes.save(stored)
            changes.record(alert_subject(link.alert_id), "classification", outcome, detail)
        return DONE
