"""Endpoint cleanup after a quarantine attempt, whatever its outcome.

The collection script leaves only a defanged copy in a SYSTEM-only folder (GetFile needs it after
the script ends, and a RunScript may not follow a GetFile in one action), so a second action runs
the script in Cleanup mode. If that never gets through, the script's own sweep removes folders
older than a day on its next run.
"""

from __future__ import annotations

from joedefender.domain.errors import Busy, NotFound, Throttled
from joedefender.domain.jobs import EndpointCleanup
from joedefender.domain.keys import cleanup_key, cleanup_work_key, endpoint_subject
from joedefender.domain.liveresponse import Command
from joedefender.endpoint import contract
from joedefender.pipeline.context import DONE, Context, Outcome, again
from joedefender.pipeline.records import Changes

_MAX_TRIES = 5


def schedule_cleanup(ctx: Context, changes: Changes, machine_id: str, job_id: str) -> None:
    """Add the cleanup to `changes` (once: a cleanup already scheduled stays as it is)."""
    key = cleanup_key(machine_id, job_id)
    if ctx.cleanups.get(key) is None:
        changes.create(ctx.cleanups, key, EndpointCleanup(machine_id=machine_id, job_id=job_id, created_at=ctx.now()))
        changes.enqueue(cleanup_work_key(key))


class CleanupStep:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, key: str) -> Outcome:
        ctx = self._ctx
        stored = ctx.cleanups.get(key)
        if stored is None or stored.record.done:
            return DONE
        record = stored.record
        owner = f"cleanup:{record.job_id}"
        subject = endpoint_subject(record.machine_id)
        if record.action_id is not None:
            try:
                action = ctx.defender.get_action(record.action_id)
            except NotFound:
                return again(ctx.config.action_poll)
            if action.status.running:
                return again(ctx.config.action_poll)
            ctx.store.release(record.machine_id, owner)
            if action.status == "Succeeded":
                record.done = True
                with ctx.changes() as changes:
                    changes.save(stored)
                    changes.record(subject, "cleanup", "cleaned", f"job folder {record.job_id} removed")
                return DONE
            record.action_id = None
            record.tries += 1
        if record.tries >= _MAX_TRIES:
            record.done = True
            with ctx.changes() as changes:
                changes.save(stored)
                changes.record(
                    subject, "cleanup", "gave up", f"job folder {record.job_id}: the script's sweep will remove it"
                )
            return DONE
        now = ctx.now()
        lease_until = now + ctx.config.action_timeout
        if not ctx.store.acquire(record.machine_id, owner, now, lease_until, ctx.config.max_live_response_sessions):
            with ctx.changes() as changes:
                changes.save(stored)
            return again(ctx.config.busy_retry)
        args = contract.format_args(contract.CollectRequest(mode="Cleanup", job_id=record.job_id))
        try:
            action = ctx.defender.run_live_response(
                record.machine_id,
                [Command.run_script(contract.SCRIPT_NAME, args)],
                f"joedefender {record.job_id}: remove the collection folder",
            )
        except (Busy, Throttled):
            ctx.store.release(record.machine_id, owner)
            with ctx.changes() as changes:
                changes.save(stored)
            return again(ctx.config.busy_retry)
        record.action_id = action.id
        with ctx.changes() as changes:
            changes.save(stored)
        return again(ctx.config.action_poll)
