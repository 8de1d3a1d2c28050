"""`joedefender status`: what the connector did, from the store alone (no API calls).

Everything shown here came from Defender or Joe Sandbox (alert titles, URLs, file names, threat
names, failure reasons) and is data, never Rich markup: every cell and title is a `Text`, which
Rich does not parse, so `http://evil.example/[/x]` prints as itself and `[link=...]` stays visible.
Every value goes through `shown` (no ESC sequence or bidi control reaches the terminal, at most
`FIELD` characters), and each table lists at most `ROWS` rows (the most recent), so the whole
output is bounded however many alerts and however long their URLs are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypeVar

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from joedefender.domain.jobs import AlertRecord
from joedefender.domain.keys import alert_subject, incident_subject, link_key, link_prefix
from joedefender.domain.text import shown
from joedefender.pipeline.facade import Records, Status

FIELD = 200  # characters of one cell
ROWS = 200  # rows of one table: the most recent ones
T = TypeVar("T")

_STYLE = {
    "done": "green",
    "failed": "red",
    "skipped": "yellow",
    "accepted": "cyan",
    "received": "cyan",
    "commented": "green",
    "pending": "cyan",
}


def _when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _styled(value: str) -> Text:
    return Text(value, style=_STYLE.get(value, ""))


def _data(value: str | None, limit: int = FIELD) -> Text:
    return Text(shown(value, limit))


def _recent(table: Table, items: Sequence[T], what: str) -> Sequence[T]:
    """The last `ROWS` items (lists come oldest first); the table's caption says what is left out."""
    if len(items) <= ROWS:
        return items
    table.caption = f"the {ROWS} most recent of {len(items)} {what}"
    return items[-ROWS:]


def alerts_table(ctx: Records) -> Table:
    table = Table(title="Alerts", expand=True)
    for column in ("alert", "state", "sample", "sample state", "outcome", "comment"):
        table.add_column(column, overflow="fold")
    alerts = sorted(ctx.alerts.list(), key=lambda stored: stored.record.received_at)
    for stored in _recent(table, alerts, "alerts"):
        alert = stored.record
        if not alert.samples:
            table.add_row(_data(alert.alert_id), _styled(alert.state.value), "", "", _data(alert.reason), "")
        for key in alert.samples:
            job = ctx.jobs.get(key)
            link = ctx.links.get(link_key(alert.alert_id, key))
            table.add_row(
                _data(alert.alert_id),
                _styled(alert.state.value),
                _data(key, 24),
                _styled(job.record.state.value) if job else "",
                _data(job.record.outcome) if job else "",
                _styled(link.record.state.value) if link else "",
            )
    return table


def jobs_table(ctx: Records) -> Table:
    table = Table(title="Sample jobs", expand=True)
    for column in ("sample", "state", "alerts", "attempts", "outcome", "updated (UTC)"):
        table.add_column(column, overflow="fold")
    jobs = sorted(ctx.jobs.list(), key=lambda stored: stored.record.updated_at)
    for stored in _recent(table, jobs, "sample jobs"):
        job = stored.record
        alerts = len({c.alert_id for c in job.candidates}) or len(ctx.links.list(prefix=link_prefix(job.key)))
        table.add_row(
            _data(job.subject),
            _styled(job.state.value),
            str(alerts),
            str(len(job.attempts)),
            _data(job.outcome),
            _when(job.updated_at),
        )
    return table


def indicators_table(ctx: Records) -> Table | None:
    """The verdict actions per sample: where each push stands and Defender's indicator ids."""
    pushes = ctx.pushes.list()
    if not pushes:
        return None
    table = Table(title="Indicators", expand=True)
    for column in ("sample", "state", "indicators", "ids", "expires (UTC)", "note"):
        table.add_column(column, overflow="fold")
    pushes = sorted(pushes, key=lambda stored: stored.record.updated_at)
    for stored in _recent(table, pushes, "pushes"):
        push = stored.record
        ids = push.ids
        listed = _data(", ".join(ids[:8]) + (f" (+{len(ids) - 8})" if len(ids) > 8 else ""))
        note = push.failure or (f"left out: {push.skipped}" if push.skipped else "")
        table.add_row(
            _data(push.sample_key, 24),
            _styled(push.state.value),
            str(len(push.values)),
            listed,
            _when(push.expires_at),
            _data(note, 2 * FIELD),
        )
    return table


def history_table(ctx: Records, subject: str, title: str) -> Table:
    table = Table(title=_data(title), expand=True)
    for column in ("time (UTC)", "step", "outcome", "detail"):
        table.add_column(column, overflow="fold")
    for entry in _recent(table, ctx.store.history(subject), "history lines"):
        table.add_row(_when(entry.at), _data(entry.step), _styled(entry.outcome), _data(entry.detail, 2 * FIELD))
    return table


def alert_detail(ctx: Records, alert: AlertRecord) -> Group:
    parts: list[Table] = [
        history_table(ctx, alert_subject(alert.alert_id), f"Alert {alert.alert_id}: {alert.state.value}")
    ]
    for key in alert.samples:
        job = ctx.jobs.get(key)
        state = job.record.state.value if job else "unknown"
        parts.append(history_table(ctx, key, f"Sample {key}: {state}"))
    if alert.incident_id is not None:  # the verdicts written on its incident
        parts.append(history_table(ctx, incident_subject(alert.incident_id), f"Incident {alert.incident_id}"))
    return Group(*parts)


def print_status(status: Status, console: Console, alert_id: str | None = None) -> bool:
    """False when the alert asked for is unknown."""
    ctx = status.records
    if alert_id is None:
        console.print(alerts_table(ctx))
        console.print(jobs_table(ctx))
        indicators = indicators_table(ctx)
        if indicators is not None:
            console.print(indicators)
        console.print(f"work items queued: {status.pending()}")
        parked = status.parked_until()
        if parked is not None:
            when = datetime.fromtimestamp(parked, UTC).strftime("%Y-%m-%d %H:%M:%S")
            console.print(f"Joe Sandbox's submission quota is used up: submissions are parked until {when} UTC")
        return True
    stored = ctx.alerts.get(alert_id)
    if stored is None:
        return False
    console.print(alert_detail(ctx, stored.record))
    return True
