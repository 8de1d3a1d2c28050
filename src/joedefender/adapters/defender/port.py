"""The `DefenderPort` over the Defender client: wire models in, the core's types out.

Errors are translated by a wrapper around every port method (`translated`, over the table both
Microsoft API adapters share: `joedefender.adapters._microsoft.errors.core_error`), rather than by making
the wire error classes subclass the core's as well. The two hierarchies disagree on what an error
is built from (Defender's status, code, target and operation; the core's message and service) and
on what `str()` says, so a class in both would need a hand-merged `__init__` each; and the mapping
is not one-to-one by class (400 splits into Busy and Rejected by code, Defender's 5xx, transport
and unreadable answers all become Transient). One table in one place says it all, the client
stays usable on its own (`joedefender check` reads the wire types), and the core never sees a
wire type.

A translated error keeps Defender's own text as `.message` (the pipeline writes it into the job
history), says the whole wire description (operation, status, code, target) in `str()`, and
chains the wire error as its cause.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime

from joedefender.adapters._microsoft.errors import translated as translated_as
from joedefender.adapters.defender.client import DefenderClient
from joedefender.adapters.defender.limiter import Family
from joedefender.adapters.defender.models import Alert as WireAlert
from joedefender.adapters.defender.models import Evidence as WireEvidence
from joedefender.adapters.defender.models import Indicator as WireIndicator
from joedefender.adapters.defender.models import IndicatorSpec, LiveResponseCommand, MachineAction
from joedefender.adapters.defender.models import Machine as WireMachine
from joedefender.domain.alerts import Alert, Evidence
from joedefender.domain.errors import Transient
from joedefender.domain.indicators import APPLICATION, ExistingIndicator, ImportResult, Indicator
from joedefender.domain.liveresponse import ActionStatus, Command, LiveResponseAction, Machine
from joedefender.pipeline.ports import DefenderPort, Start

SERVICE = "defender"
_ACTION_STATUSES = {status.value.lower(): status for status in ActionStatus}

_FAMILIES = {Start.LIVE_RESPONSE: Family.LIVE_RESPONSE, Start.COMMENT_BATCH: Family.ALERTS_BATCH_UPDATE}


def translated() -> AbstractContextManager[None]:
    """Raise the core's error for any Defender client error raised inside the block."""
    return translated_as(SERVICE)


class DefenderAdapter:
    """Defender for Endpoint as the core sees it; raises only `joedefender.domain.errors` types."""

    batches_comments = True  # batchUpdate: many alerts a call, 10 calls a minute

    def __init__(self, client: DefenderClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"DefenderAdapter({self.client!r})"

    def close(self) -> None:
        self.client.close()

    def start_turn(self, start: Start) -> float:
        return self.client.limiter.wait_needed(_FAMILIES[start])

    # --- alerts -------------------------------------------------------------------------------------

    def list_alerts(self, since: datetime, until: datetime) -> Iterator[Alert]:
        with translated():
            for alert in self.client.list_alerts(since, until, time_field="lastUpdateTime", expand_evidence=True):
                yield to_alert(alert)

    def get_alert(self, alert_id: str) -> Alert:
        with translated():
            return to_alert(self.client.get_alert(alert_id))

    def get_alerts(self, alert_ids: Sequence[str]) -> list[Alert]:
        with translated():
            return [to_alert(alert) for alert in self.client.get_alerts(alert_ids)]

    def add_comment(self, alert_id: str, text: str) -> None:
        with translated():
            self.client.add_comment(alert_id, text)

    def comment_alerts(self, alert_ids: Sequence[str], text: str) -> None:
        with translated():
            self.client.batch_update_alerts(alert_ids, comment=text)

    def classify_alert(self, alert_id: str, classification: str, determination: str) -> None:
        with translated():
            self.client.update_alert(alert_id, classification=classification, determination=determination)

    # --- machines and live response -----------------------------------------------------------------

    def get_machine(self, machine_id: str) -> Machine:
        with translated():
            machine = self.client.get_machine(machine_id)
        return to_machine(machine)

    def get_machines(self, machine_ids: Sequence[str]) -> list[Machine]:
        with translated():
            return [to_machine(machine) for machine in self.client.get_machines(machine_ids)]

    def list_actions(self, machine_id: str) -> list[LiveResponseAction]:
        with translated():
            return [to_action(action) for action in self.client.list_machine_actions(machine_id=machine_id)]

    def get_action(self, action_id: str) -> LiveResponseAction:
        with translated():
            return to_action(self.client.get_machine_action(action_id))

    def cancel_action(self, action_id: str, comment: str) -> None:
        with translated():
            self.client.cancel_machine_action(action_id, comment)

    def run_live_response(self, machine_id: str, commands: Sequence[Command], comment: str) -> LiveResponseAction:
        wire = [to_wire_command(command) for command in commands]
        with translated():
            return to_action(self.client.run_live_response(machine_id, wire, comment))

    @contextmanager
    def stream_file(self, action_id: str, index: int, *, max_bytes: int) -> Iterator[Iterator[bytes]]:
        with translated(), self.client.stream_result(action_id, index, gunzip=True, max_bytes=max_bytes) as chunks:
            yield _translated_chunks(chunks)

    def script_output(self, action_id: str, index: int) -> str:
        with translated():
            return self.client.get_script_result(action_id, index).script_output or ""

    def ensure_library_file(self, name: str, content: bytes, *, description: str, parameters_description: str) -> None:
        with translated():
            self.client.ensure_library_file(
                name, content, description=description, parameters_description=parameters_description
            )

    # --- indicators ---------------------------------------------------------------------------------

    def import_indicators(self, indicators: Sequence[Indicator]) -> list[ImportResult]:
        specs = [to_spec(indicator) for indicator in indicators]
        with translated():
            results = self.client.import_indicators(specs)
        return [
            ImportResult(value=r.indicator or "", id=r.id, failed=r.is_failed, reason=r.failure_reason) for r in results
        ]

    def find_indicators(self, values: Sequence[str]) -> list[ExistingIndicator]:
        if not values:
            return []
        with translated():
            found = self.client.list_indicators(values=values)
        return [to_existing(item) for item in found]

    def own_indicators(self) -> list[ExistingIndicator]:
        with translated():
            found = self.client.list_indicators(application=APPLICATION)
        return [to_existing(item) for item in found]

    def count_indicators(self) -> int:
        with translated():
            return len(self.client.list_indicators(page_size=10_000))

    def delete_indicators(self, ids: Sequence[str]) -> None:
        with translated():
            self.client.batch_delete_indicators(ids)


def to_spec(indicator: Indicator) -> IndicatorSpec:
    return IndicatorSpec(
        indicator_value=indicator.value,
        indicator_type=indicator.type,
        action=indicator.action,
        title=indicator.title,
        description=indicator.description,
        application=indicator.application,
        expiration_time=indicator.expires_at,
        severity=indicator.severity,
        rbac_group_names=list(indicator.rbac_group_names) or None,
        generate_alert=indicator.generate_alert,
    )


def to_existing(item: WireIndicator) -> ExistingIndicator:
    return ExistingIndicator(
        id=item.id,
        value=item.indicator_value or "",
        type=item.indicator_type or "",
        application=item.application,
        title=item.title,
        action=item.action,
        expires_at=item.expiration_time,
    )


def _translated_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks, with a failure while reading them (a broken download, a cap) in the core's terms
    already inside the caller's `with` block."""
    with translated():
        yield from chunks


# --- wire models to the core's ---------------------------------------------------------------------


def to_alert(alert: WireAlert) -> Alert:
    return Alert(
        id=alert.id,
        title=alert.title,
        severity=alert.severity,
        status=alert.status,
        detection_source=alert.detection_source,
        machine_id=alert.machine_id,
        threat_name=alert.threat_name,
        last_update_time=alert.last_update_time,
        evidence=tuple(to_evidence(item) for item in alert.evidence),
        comments=tuple(comment.comment or "" for comment in alert.comments),
        classification=alert.classification,
        determination=alert.determination,
        incident_id=None if alert.incident_id is None else str(alert.incident_id),
    )


def to_machine(machine: WireMachine) -> Machine:
    return Machine(
        machine.id,
        online=(machine.health_status or "") == "Active",
        os_platform=machine.os_platform,
        agent_version=machine.agent_version,
    )


def to_evidence(evidence: WireEvidence) -> Evidence:
    return Evidence(
        entity_type=evidence.entity_type,
        sha256=evidence.sha256,
        sha1=evidence.sha1,
        file_name=evidence.file_name,
        file_path=evidence.file_path,
        url=evidence.url,
        detection_status=evidence.detection_status,
        process_command_line=evidence.process_command_line,
    )


def to_action(action: MachineAction) -> LiveResponseAction:
    status = _ACTION_STATUSES.get((action.status or "").lower())
    if status is None:
        raise Transient(f"machine action {action.id} has an unknown status {action.status!r}", service=SERVICE)
    return LiveResponseAction(
        id=action.id,
        status=status,
        comment=action.requestor_comment or "",
        errors=tuple(error for command in action.commands for error in command.errors),
    )


def to_wire_command(command: Command) -> LiveResponseCommand:
    if command.kind == "GetFile":
        return LiveResponseCommand.get_file(command.target)
    return LiveResponseCommand.run_script(command.target, command.args)


_: type[DefenderPort] = DefenderAdapter  # mypy checks here that the adapter is the port
