"""What the operator's page shows, read from the store alone and bounded however large it grows.

Each record kind is read once per request and folded into counts: an alert among 100,000 costs
a count, not a row. The lists keep only the `limit` most recent items (`heapq.nlargest`), and a
history only its last `limit` lines, so what a page holds does not grow with the store. States,
reasons and work kinds are taken as the records hold them (their values, in their enum's order
where there is one), so a state or a work kind added later shows up without a change here.
Nothing here calls Defender or Joe: the page works when their settings are wrong.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from joedefender.domain.jobs import AlertRecord, AlertState, IndicatorBudget, JobState, SampleJob
from joedefender.domain.keys import alert_subject, link_key, link_prefix
from joedefender.pipeline.ports import HistoryEntry, Store
from joedefender.pipeline.quota import park_reason, parked_until, waits_for_quota
from joedefender.pipeline.records import Data, Records

HOURS = 24  # the chart's window
HOUR = 3600.0
LIMIT = 200  # rows of a list, lines of a history: the most recent ones
RECENT_ALERTS = 50  # rows of the overview's list of alerts
_WAITING_STEP, _WAITING_OUTCOME = "collect", "waiting"  # the history line a job waiting for machines writes


@dataclass
class Hour:
    """One hour of the chart: alerts taken in, commented, skipped and failed in it."""

    start: float
    received: int = 0
    commented: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Parked:
    """Something held back, and why: the subject (a sample key), since when, what the history says."""

    subject: str
    since: float | None
    why: str


@dataclass(frozen=True)
class QuotaPark:
    """Joe's submission quota is used up: submissions wait until `until`."""

    until: float
    reason: str
    jobs: int  # sample jobs waiting for it


@dataclass(frozen=True)
class Overview:
    now: float
    hours: list[Hour]  # oldest first; the last is the hour under way
    alerts: dict[str, int]  # by state
    jobs: dict[str, int]  # by state
    links: dict[str, int]  # (alert, sample) comments by state
    pushes: dict[str, int]  # indicator pushes by state
    indicators: int  # indicators Defender holds from our pushes
    budget: IndicatorBudget | None
    work: dict[str, int]  # queued work items by kind
    live_response_sessions: int  # machine leases held now
    live_response_limit: int | None
    waiting_for_machines: list[Parked]  # the most recent ones
    waiting_for_machines_total: int
    quota: QuotaPark | None
    recent_alerts: list[AlertRecord]  # the most recently received


@dataclass(frozen=True)
class Listed:
    """The most recent `items` of `total`, and the alerts each one's sample was seen in."""

    items: list[SampleJob]
    total: int
    states: dict[str, int]
    alerts: dict[str, list[str]]  # sample key -> alert ids


@dataclass(frozen=True)
class SampleView:
    key: str
    job: SampleJob | None
    comment: str | None  # the (alert, sample) comment's state
    history: list[HistoryEntry]
    history_total: int


@dataclass(frozen=True)
class AlertView:
    alert: AlertRecord
    history: list[HistoryEntry]
    history_total: int
    samples: list[SampleView]
    samples_total: int


def _counts(values: Iterable[str], order: type[Enum] | None = None) -> dict[str, int]:
    """How many of each value, in the enum's order (every member, zeros too), then any other."""
    counted = Counter(values)
    known = [str(member.value) for member in order] if order is not None else []
    return {**{value: counted.get(value, 0) for value in known}, **dict(sorted(counted.items()))}


def _hours(now: float) -> list[Hour]:
    first = (now // HOUR - (HOURS - 1)) * HOUR
    return [Hour(first + n * HOUR) for n in range(HOURS)]


def _bucket(hours: list[Hour], moment: float | None) -> Hour | None:
    if moment is None:
        return None
    index = int((moment - hours[0].start) // HOUR)
    return hours[index] if 0 <= index < len(hours) else None


def _last(lines: list[HistoryEntry], limit: int) -> list[HistoryEntry]:
    return lines[-limit:] if limit > 0 else []


class OverviewReader:
    """The page's reads, over the store alone."""

    def __init__(self, store: Store, *, live_response_limit: int | None = None) -> None:
        self._store = store
        self._records = Records(store)
        self._live_response_limit = live_response_limit

    def overview(self, now: float, limit: int = LIMIT) -> Overview:
        records = self._records
        jobs = {stored.record.key: stored.record for stored in records.jobs.list()}
        alerts = [_AlertFacts.of(doc.data) for doc in self._store.list(records.alerts.kind)]
        links = [doc.data for doc in self._store.list(records.links.kind)]
        pushes = [stored.record for stored in records.pushes.list()]
        budget = records.budgets.list()
        waiting = [job for job in jobs.values() if not job.state.final and job.waiting_since is not None]
        recent = heapq.nlargest(limit, waiting, key=lambda job: job.waiting_since or 0.0)
        newest = heapq.nlargest(RECENT_ALERTS, alerts, key=lambda alert: alert.received_at)
        return Overview(
            now=now,
            hours=_chart(now, alerts, jobs, links),
            alerts=_counts((a.state.value for a in alerts), AlertState),
            jobs=_counts((j.state.value for j in jobs.values()), JobState),
            links=_counts(str(link.get("state", "")) for link in links),
            pushes=_counts(push.state.value for push in pushes),
            indicators=sum(len(push.ids) for push in pushes),
            budget=budget[0].record if budget else None,
            work=_counts(item.key.partition(":")[0] for item in self._store.items()),
            live_response_sessions=self._store.active(now),
            live_response_limit=self._live_response_limit,
            waiting_for_machines=[self._waiting(job) for job in recent],
            waiting_for_machines_total=len(waiting),
            quota=self._quota(now, jobs.values()),
            recent_alerts=[found.record for a in newest if (found := records.alerts.get(a.alert_id)) is not None],
        )

    def _waiting(self, job: SampleJob) -> Parked:
        """Why the job waits for its machines: the history line it wrote when it began to."""
        lines = self._store.history(job.key)
        line = next((e for e in reversed(lines) if (e.step, e.outcome) == (_WAITING_STEP, _WAITING_OUTCOME)), None)
        why = line.detail if line is not None and line.detail else "no machine carrying the file can be used now"
        return Parked(job.key, job.waiting_since, why)

    def _quota(self, now: float, jobs: Iterable[SampleJob]) -> QuotaPark | None:
        until = parked_until(self._store, now)
        if until is None:
            return None
        waiting = sum(1 for job in jobs if not job.state.final and waits_for_quota(job))
        return QuotaPark(until, park_reason(self._store), waiting)

    def jobs(self, limit: int = LIMIT, state: str | None = None) -> Listed:
        """The most recently updated sample jobs (of one state, if given)."""
        every = [stored.record for stored in self._records.jobs.list()]
        chosen = [job for job in every if state is None or job.state.value == state]
        recent = heapq.nlargest(limit, chosen, key=lambda job: job.updated_at)
        alerts = {job.key: self._alerts_of(job, limit) for job in recent}
        return Listed(recent, len(chosen), _counts((job.state.value for job in every), JobState), alerts)

    def _alerts_of(self, job: SampleJob, limit: int) -> list[str]:
        """The alerts that named the sample: its links (a URL has no candidate machine)."""
        linked = [stored.record.alert_id for stored in self._records.links.list(prefix=link_prefix(job.key))]
        return list(dict.fromkeys([*linked, *(c.alert_id for c in job.candidates)]))[:limit]

    def alert(self, alert_id: str, limit: int = LIMIT) -> AlertView | None:
        """One alert: its history and each sample's, as `status ALERT_ID` shows them."""
        stored = self._records.alerts.get(alert_id)
        if stored is None:
            return None
        alert = stored.record
        history = self._store.history(alert_subject(alert_id))
        samples = [self._sample(alert_id, key, limit) for key in alert.samples[:limit]]
        return AlertView(alert, _last(history, limit), len(history), samples, len(alert.samples))

    def _sample(self, alert_id: str, key: str, limit: int) -> SampleView:
        job = self._records.jobs.get(key)
        link = self._records.links.get(link_key(alert_id, key))
        history = self._store.history(key)
        return SampleView(
            key,
            job.record if job is not None else None,
            link.record.state.value if link is not None else None,
            _last(history, limit),
            len(history),
        )


@dataclass(frozen=True, slots=True)
class _AlertFacts:
    """What the counts need of an alert record, read from its document without validating the
    whole record: the overview reads every alert, and a model per alert is most of its cost."""

    alert_id: str
    state: AlertState
    received_at: float
    triaged_at: float | None
    samples: list[str]

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> _AlertFacts:
        triaged = data.get("triaged_at")
        return cls(
            str(data["alert_id"]),
            AlertState(data.get("state", AlertState.RECEIVED.value)),
            float(data["received_at"]),
            None if triaged is None else float(triaged),
            [str(key) for key in data.get("samples") or []],
        )


def _chart(now: float, alerts: list[_AlertFacts], jobs: dict[str, SampleJob], links: list[Data]) -> list[Hour]:
    """Per hour: alerts received; first commented (their first comment); skipped or failed in
    triage (when triaged), or failed because every sample of theirs failed (when the last did)."""
    hours = _hours(now)
    first_comment: dict[str, float] = {}
    for link in links:
        moment, alert_id = link.get("commented_at"), str(link.get("alert_id"))
        if moment is not None and float(moment) < first_comment.get(alert_id, float("inf")):
            first_comment[alert_id] = float(moment)
    for alert in alerts:
        if hour := _bucket(hours, alert.received_at):
            hour.received += 1
        if hour := _bucket(hours, first_comment.get(alert.alert_id)):
            hour.commented += 1
        if hour := _bucket(hours, _ended_without_verdict(alert, jobs)):
            if alert.state == AlertState.SKIPPED:
                hour.skipped += 1
            else:
                hour.failed += 1
    return hours


def _ended_without_verdict(alert: _AlertFacts, jobs: dict[str, SampleJob]) -> float | None:
    """When the alert ended without any verdict: skipped or failed in triage, or accepted with
    every sample job failed (the last one's end); None while it has, or may still get, one."""
    if alert.state in (AlertState.SKIPPED, AlertState.FAILED):
        return alert.triaged_at if alert.triaged_at is not None else alert.received_at
    if alert.state != AlertState.ACCEPTED or not alert.samples:
        return None
    found = [jobs.get(key) for key in alert.samples]
    if any(job is None or job.state != JobState.FAILED for job in found):
        return None
    return max(job.updated_at for job in found if job is not None)
