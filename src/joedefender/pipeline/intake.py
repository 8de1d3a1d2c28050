"""Intake: record an alert id and answer at once. A repeated delivery is a no-op."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from joedefender.domain.jobs import AlertRecord, AlertState
from joedefender.domain.triage import NO_EVIDENCE
from joedefender.errors import JoeDefenderError
from joedefender.pipeline.context import Context

# Defender alert ids look like "da637472900382838869_1364969609"; older ones are GUID-like.
_ALERT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")
_MACHINE_ID = re.compile(r"^[0-9a-fA-F]{40}$")


class InvalidAlertError(JoeDefenderError):
    """The alert reference is malformed; the message says how."""


@dataclass(frozen=True)
class Accepted:
    alert_id: str
    created: bool  # False: the alert was known already


def triage_key(alert_id: str) -> str:
    return f"triage:{alert_id}"


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

    def receive(
        self,
        alert_id: str,
        *,
        machine_id: str | None = None,
        source: str = "cli",
        updated_at: datetime | None = None,
    ) -> Accepted:
        """Record the alert and queue its triage. `updated_at` (Defender's lastUpdateTime, from the
        poller) lets an alert skipped for lack of evidence be looked at again once Defender adds some."""
        alert_id = validate_alert_id(alert_id)
        record = AlertRecord(
            alert_id=alert_id,
            machine_id=validate_machine_id(machine_id),
            source=source,
            received_at=self._ctx.now(),
        )
        created = self._ctx.alerts.create(alert_id, record) is not None
        if created:
            self._ctx.record(f"alert:{alert_id}", "intake", "received", f"from {source}")
            self._ctx.enqueue(triage_key(alert_id))
        else:
            self._requeue_untriaged(alert_id)
            if updated_at is not None:
                self._retriage_if_evidence_may_have_come(alert_id, updated_at)
        return Accepted(alert_id, created)

    def _retriage_if_evidence_may_have_come(self, alert_id: str, updated_at: datetime) -> None:
        stored = self._ctx.alerts.get(alert_id)
        if stored is None:
            return
        record = stored.record
        triaged_at = record.triaged_at
        if record.state != AlertState.SKIPPED or record.reason != NO_EVIDENCE or triaged_at is None:
            return
        if updated_at.timestamp() <= triaged_at:
            return
        record.state = AlertState.RECEIVED
        self._ctx.alerts.save(stored)
        self._ctx.record(f"alert:{alert_id}", "intake", "re-triage", "Defender updated an alert that had no evidence")
        self._ctx.enqueue(triage_key(alert_id))

    def _requeue_untriaged(self, alert_id: str) -> None:
        """A crash between recording an alert and queueing its triage would leave it unseen for
        good; the sender's retry queues it again (a key already queued only becomes due now)."""
        stored = self._ctx.alerts.get(alert_id)
        if stored is not None and stored.record.state == AlertState.RECEIVED:
            self._ctx.enqueue(triage_key(alert_id))
