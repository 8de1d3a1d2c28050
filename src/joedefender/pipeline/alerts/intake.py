"""Intake: record an alert id and answer at once. A repeated delivery is a no-op.

The alert, its history line and its triage work item are written in one unit of work, so an
alert is never recorded without the work that will triage it. The alerts a poll lists are
recorded many to a unit of work (`receive_listed`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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
from joedefender.pipeline.records import Changes

# Defender alert ids look like "da637472900382838869_1364969609"; older ones are GUID-like.
_ALERT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")
_MACHINE_ID = re.compile(r"^[0-9a-fA-F]{40}$")
_REDELIVERY_QUIET = 300.0  # nominal seconds after a triage in which a repeated delivery changes nothing
# Alerts a poll listed, recorded in one unit of work: three writes each (the alert, its history
# line, its triage's work item), within one Azure Tables transaction's hundred.
LISTED_PER_COMMIT = 30


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
        record = self._record(alert_id, machine_id, source, alert)
        try:
            with self._ctx.changes() as changes:
                self._write(changes, record)
        except AlreadyExists:
            self._retriage_if_evidence_may_have_come(record.alert_id, updated_at, record.snapshot)
            return Accepted(record.alert_id, False)
        if record.snapshot is None:
            self.reads.note(record.alert_id)
        return Accepted(record.alert_id, True)

    def receive_listed(self, alerts: Sequence[Alert], *, source: str = "poller") -> int:
        """Record alerts a poll listed (each with its evidence and valid ids), LISTED_PER_COMMIT
        to a unit of work; how many were new. A chunk holding an alert known already (the poll
        windows overlap) is taken one alert at a time, as `receive` takes each."""
        new = 0
        for start in range(0, len(alerts), LISTED_PER_COMMIT):
            chunk = alerts[start : start + LISTED_PER_COMMIT]
            try:
                with self._ctx.changes() as changes:
                    for alert in chunk:
                        self._write(changes, self._record(alert.id, alert.machine_id, source, alert))
                new += len(chunk)
            except AlreadyExists:
                for alert in chunk:
                    taken = self.receive(
                        alert.id,
                        machine_id=alert.machine_id,
                        source=source,
                        updated_at=alert.last_update_time,
                        alert=alert,
                    )
                    new += taken.created
        return new

    def _record(self, alert_id: str, machine_id: str | None, source: str, alert: Alert | None) -> AlertRecord:
        """A new alert's record (`InvalidAlertError` for a malformed id)."""
        alert_id = validate_alert_id(alert_id)
        return AlertRecord(
            alert_id=alert_id,
            machine_id=validate_machine_id(machine_id),
            source=source,
            received_at=self._ctx.now(),
            snapshot=_snapshot(alert, alert_id),
        )

    def _write(self, changes: Changes, record: AlertRecord) -> None:
        """The alert, its history line and its triage, into `changes`."""
        changes.create(self._ctx.alerts, record.alert_id, record)
        changes.record(alert_subject(record.alert_id), "intake", "received", f"from {record.source}")
        changes.enqueue(triage_key(record.alert_id))

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
