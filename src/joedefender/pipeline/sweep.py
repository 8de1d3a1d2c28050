"""The backstop: work the records say is unfinished but that no live work item will advance.

On a store whose queue is separate from its documents (Azure Storage queues beside tables) a
message can be lost: deleted by a host that then failed to write, expired after 7 days, moved to
the poison queue, or never sent. The engine itself never loses an item, so the sweep only matters
there, but it is store-neutral and harmless anywhere: an alert still `received` (not triaged) and
a sample job not final each need their work item; one that is missing, or whose due time (or
lease) passed more than `grace` seconds ago without anyone taking it, is queued again. A
duplicate wake-up costs one no-op delivery: the queue hands out each key under one lease only.
"""

from __future__ import annotations

import logging

from joedefender.domain.jobs import AlertState
from joedefender.domain.keys import sample_work_key, triage_key
from joedefender.pipeline.context import Context

logger = logging.getLogger("joedefender.sweeper")


def unfinished_work(ctx: Context) -> list[str]:
    """The work keys the records need queued: received alerts' triage, open sample jobs."""
    keys = [triage_key(a.record.alert_id) for a in ctx.alerts.list() if a.record.state == AlertState.RECEIVED]
    keys += [sample_work_key(j.record.key) for j in ctx.jobs.list() if not j.record.state.final]
    return keys


def sweep(ctx: Context, *, now: float, grace: float) -> list[str]:
    """Queue again each unfinished key with no item, or with one stuck past `grace`; returns them."""
    queued = {item.key: item.due_at for item in ctx.store.items()}
    requeued = []
    for key in unfinished_work(ctx):
        due = queued.get(key)
        if due is None or due + grace < now:
            ctx.store.enqueue(key, now)
            requeued.append(key)
    if requeued:
        logger.warning("sweeper: queued %d stranded work item(s) again: %s", len(requeued), ", ".join(requeued[:10]))
    return requeued
