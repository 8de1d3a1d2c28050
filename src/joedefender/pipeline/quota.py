"""Joe Sandbox's submission quota used up: submissions park until the quota window resets.

Joe documents daily and monthly submission limits per plan but no reset time (joe-api.md §5):
we assume the daily window resets at 00:00 UTC and look again then (docs silent). The park is a
document in the store, so every worker and every process sees it, and none spends a submission
call to learn it again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from joedefender.domain.jobs import JobState, SampleJob
from joedefender.domain.keys import link_prefix
from joedefender.pipeline.context import Context
from joedefender.pipeline.ports import StateStore
from joedefender.pipeline.records import Data, Records, upsert

_KIND, _KEY = "meta", "joe-quota"


def parked_until(store: StateStore, now: float) -> float | None:
    """When parked submissions may go again; None when nothing is parked."""
    doc = store.get(_KIND, _KEY)
    if doc is None:
        return None
    until = float(doc.data.get("until", 0.0))
    return until if until > now else None


def park_reason(store: StateStore) -> str:
    """What Joe said when the quota ran out (the park's reason); empty when nothing is parked."""
    doc = store.get(_KIND, _KEY)
    return str(doc.data.get("reason", "")) if doc is not None else ""


def waits_for_quota(job: SampleJob) -> bool:
    """While the quota is used up, this job waits: it is about to submit, or to start collecting a
    sample only a submission would use. Lookups, collections under way and analyses go on."""
    return job.state == JobState.SUBMIT or (job.state == JobState.COLLECT and job.current is None)


def alerts_waiting_for_quota(records: Records) -> list[str]:
    """The alerts whose samples wait for the quota to reset (what `process` names when it stops)."""
    waiting = [job.record for job in records.jobs.list() if not job.record.state.final]
    alerts = {
        link.record.alert_id
        for job in waiting
        if waits_for_quota(job)
        for link in records.links.list(prefix=link_prefix(job.key))
    }
    return sorted(alerts)


def park(ctx: Context, reason: str) -> tuple[float, bool]:
    """Park submissions until the next 00:00 UTC; True when this started the park."""
    now = ctx.now()
    moment = datetime.fromtimestamp(now, UTC)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    until = now + ctx.clock.real(max(60.0, (midnight - moment).total_seconds()))

    def parked(data: Data | None) -> Data | None:
        if data is not None and float(data.get("until", 0.0)) > now:
            return None  # parked already: keep that end
        return {"until": until, "reason": reason[:500]}

    data, started = upsert(ctx.store, _KIND, _KEY, parked)
    return (float(data["until"]) if data is not None else until), started
