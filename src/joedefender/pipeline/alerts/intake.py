"""Intake: record an alert id and answer at once. A repeated delivery is a no-op.

The alert, its history line and its triage work item are written in one unit of work, so an
alert is never recorded without the work that will triage it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

from joedefender.domain.alerts import Alert
from joedefender.domain.errors import JoeDefenderError
from joedefender.domain.jobs import AlertRecord, AlertState
from joedefender.domain.keys import alert_subject, triage_key
from joedefender.domain.reasons import Reason
from joedefender.pipeline.alerts.reads import AlertReads
from joedefender.pipeline.context import Context
from joedefender.pipeline.ports import AlreadyExists

# Defender alert ids look like "da637472900382838869_1364969609"; older ones are GUID-like.
_ALERT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")
_MACHINE_ID = re.compile(r"^[0-9a-fA-F]{40}$")
_REDELIVERY_QUIET = 300.0  # nominal seconds after a triage in which a repeated delivery changes nothing


class InvalidAlertError(JoeDefenderError):
    """The alert reference is malformed; the message says how."""


@dataclass(frozen=True)
class Accepted:
    alert_id: str
    created: bool  # False: the alert was known already


def validate_alert_id(alert_id: object) -> str:
    if not isinstance(alert_id, str) or not alert_id.strip():
        raise InvalidAlertError("the alert id is missing or not a string")
    value = alert_id.strip()
    if not _ALERT_ID.fullmatch(value):
        raise InvalidAlertError(
            "the alert id may hold only letters, digits, '_' and '-' (at most 128), "
            f"got {value[:40]!r}{'...' if len(value) > 40 else ''}"
        )
    return value


def validate_machine_id(machine_id: object) -> str | None:
    if machine_id is None or machine_id == "":
        return None
    if not isinstance(machine_id, str) or not _MACHINE_ID.fullmatch(machine_id):
        raise InvalidAlertError("machineId must be 40 hexadecimal characters")
    return machine_id.lower()


class Intake:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.reads = AlertReads(ctx)

    def receive(
        self,
        alert_id: str,
        *,
        machine_id: str | None = None,
        source: str = "cli",
        updated_at: datetime | None = None,
        alert: Alert | None = None,
    ) -> Accepted:
        """Record the alert and queue its triage. `updated_at` (Defender's lastUpdateTime, from the
        poller) lets an alert skipped for lack of evidence be looked at again once Defender adds some.
        `alert` (the poller's, with its evidence) is what triage then works from; without it,
        triage reads the alert, in bulk with the others taken in meanwhile."""
        ctx = self._ctx
        alert_id = validate_alert_id(alert_id)
        snapshot = _snapshot(alert, alert_id)
        record = AlertRecord(
            alert_id=alert_id,
            machine_id=validate_machine_id(machine_id),
            source=source,
            received_at=ctx.now(),
            snapshot=snapshot,
        )
        try:
            with ctx.changes() as changes:
                changes.create(ctx.alerts, alert_id, record)
                changes.record(alert_subject(alert_id), "intake", "received", f"from {source}")
                changes.enqueue(triage_key(alert_id))
        except AlreadyExists:
            self._retriage_if_evidence_may_have_come(alert_id, updated_at, snapshot)
            return Accepted(alert_id, False)
        if snapshot is None:
            self.reads.note(alert_id)
        return Accepted(alert_id, True)

    def _retriage_if_evidence_may_have_come(
        self, alert_id: str, updated_at: datetime | None, snapshot: Alert | None
    ) -> None:
        """Defender adds evidence to an alert as its investigation goes on: an alert triaged before
        is triaged again when the poller sees Defender update it after that (`updated_at`), or when
        it is delivered again (webhook, CLI) a while after its triage. Samples already linked keep
        their comment; only new ones are added."""
        ctx = self._ctx
        stored = ctx.alerts.get(alert_id)
        if stored is None:
            return
        record = stored.record
        triaged_at = record.triaged_at
        skipped_for_no_evidence = (
            record.state == AlertState.SKIPPED
            and record.cause is not None
            and record.cause.reason == Reason.NO_EVIDENCE
        )
        if triaged_at is None or not (skipped_for_no_evidence or record.state == AlertState.ACCEPTED):
            return
        if updated_at is not None:
            if updated_at.timestamp() <= triaged_at:
                return
            why = "Defender updated the alert since its triage"
        else:
            if ctx.clock.since(triaged_at) < _REDELIVERY_QUIET:
                return  # a sender's quick retry, not news
            why = "the alert was delivered again"
        record.state, record.snapshot = AlertState.RECEIVED, snapshot
        with ctx.changes() as changes:
            changes.save(stored)
            changes.record(alert_subject(alert_id), "intake", "re-triage", why)
            changes.enqueue(triage_key(alert_id))
        if snapshot is None:
            self.reads.note(alert_id)


def _snapshot(alert: Alert | None, alert_id: str) -> Alert | None:
    """What triage needs of a listed alert: its evidence, not its comments (kept out of the store)."""
    if alert is None or alert.id != alert_id:
        return None
    return replace(alert, comments=())
