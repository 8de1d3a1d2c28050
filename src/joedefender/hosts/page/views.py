"""What each page shows, from the facade's bounded reads: rows and charts for the templates."""

from __future__ import annotations

from dataclasses import dataclass

from joedefender.domain.jobs import SampleJob
from joedefender.hosts.page.charts import grouped, horizontal
from joedefender.hosts.page.links import Links
from joedefender.hosts.page.render import render
from joedefender.pipeline.facade import Listed, Status

OVERVIEW_REFRESH = 60  # seconds: the overview reloads itself (a meta refresh; no script)
_SERIES = [("received", "alerts in"), ("commented", "commented"), ("skipped", "skipped"), ("failed", "failed")]
_ALERTS_PER_JOB = 10


@dataclass(frozen=True)
class JobRow:
    job: SampleJob
    subject: str
    file_name: str
    outcome: str
    threats: str
    alerts: list[str]


def overview_page(status: Status, links: Links) -> str:
    o = status.overview()
    hours = [(h.start, {key: getattr(h, key) for key, _ in _SERIES}) for h in o.hours]
    return render(
        "overview.html",
        o=o,
        now=o.now,
        links=links,
        refresh=OVERVIEW_REFRESH,
        hourly=grouped("Alerts per hour", hours, _SERIES),
        by_state=horizontal("Sample jobs by state", o.jobs),
    )


def _row(job: SampleJob, alert_ids: list[str]) -> JobRow:
    file_name = job.file_name or next((c.file_name for c in job.candidates if c.file_name), None) or ""
    threats = [c.threat_name for c in job.candidates if c.threat_name]
    if job.verdict is not None:
        threats = [*job.verdict.threat_names, *threats]
    return JobRow(
        job=job,
        subject=job.subject,
        file_name=file_name,
        outcome=job.outcome,
        threats=", ".join(dict.fromkeys(threats)),
        alerts=alert_ids[:_ALERTS_PER_JOB],
    )


def jobs_page(status: Status, links: Links, state: str | None) -> str:
    listed: Listed = status.jobs(state)
    rows = [_row(job, listed.alerts.get(job.key, [])) for job in listed.items]
    return render("jobs.html", listed=listed, rows=rows, state=state, now=status.now(), links=links, refresh=None)


def alert_page(status: Status, links: Links, alert_id: str) -> str | None:
    view = status.alert(alert_id)
    if view is None:
        return None
    return render("alert.html", view=view, now=status.now(), links=links, refresh=None)


def missing_page(status: Status, links: Links, message: str) -> str:
    return render("missing.html", message=message, now=status.now(), links=links, refresh=None)
