"""The core's ports over Microsoft Graph: the alert operations of `DefenderPort` through alerts_v2
(everything else through the MDE adapter it is composed with), and `IncidentPort`.

Live response exists only on the MDE API (coverage.md 4.5), so machines, live response, the
library and indicators go to the MDE adapter given here, keyed on the `mdeDeviceId` Graph's
evidence names: one app registration, two token audiences. The adapters stay apart: this one
knows the other only as a `DefenderPort`. Errors are the core's (`translated`, the table both
Microsoft API adapters share), with `service="graph"`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from joedefender.adapters._microsoft.errors import translated as translated_as
from joedefender.adapters.graph.client import GraphClient
from joedefender.adapters.graph.mapping import camel, to_alert, to_incident
from joedefender.domain.alerts import Alert
from joedefender.domain.incidents import Incident, with_verdict_tag
from joedefender.domain.indicators import ExistingIndicator, ImportResult, Indicator
from joedefender.domain.liveresponse import Command, LiveResponseAction, Machine
from joedefender.pipeline.ports import DefenderPort, IncidentPort, Start

SERVICE = "graph"


def translated() -> AbstractContextManager[None]:
    """Raise the core's error for any Graph client error raised inside the block."""
    return translated_as(SERVICE)


class GraphAlertSource:
    """`DefenderPort` with alerts read and commented through Graph (`AlertSource=graph`)."""

    batches_comments = False  # one comment POST per alert, in Graph's 150 a minute

    def __init__(self, client: GraphClient, mde: DefenderPort, *, service_sources: Sequence[str] = ()) -> None:
        """`service_sources`: the Graph serviceSource values listed (all when empty)."""
        self.client = client
        self.mde = mde
        self.service_sources = tuple(service_sources)

    def __repr__(self) -> str:
        return f"GraphAlertSource({self.client!r}, {self.mde!r})"

    def close(self) -> None:
        self.client.close()

    # --- alerts, through Graph ------------------------------------------------------------------

    def list_alerts(self, since: datetime, until: datetime) -> Iterator[Alert]:
        with translated():
            for alert in self.client.list_alerts(since, until, service_sources=self.service_sources):
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
        """Graph has no batch: one POST per alert, paced by the limiter. The first failure ends
        the call; the alerts before it have their comment (a read-back finds them)."""
        with translated():
            for alert_id in dict.fromkeys(alert_ids):
                self.client.add_comment(alert_id, text)

    def classify_alert(self, alert_id: str, classification: str, determination: str) -> None:
        with translated():
            self.client.update_alert(alert_id, classification=camel(classification), determination=camel(determination))

    # --- machines, live response, library, indicators: the MDE API ----------------------------

    def get_machine(self, machine_id: str) -> Machine:
        return self.mde.get_machine(machine_id)

    def get_machines(self, machine_ids: Sequence[str]) -> list[Machine]:
        return self.mde.get_machines(machine_ids)

    def list_actions(self, machine_id: str) -> list[LiveResponseAction]:
        return self.mde.list_actions(machine_id)

    def get_action(self, action_id: str) -> LiveResponseAction:
        return self.mde.get_action(action_id)

    def cancel_action(self, action_id: str, comment: str) -> None:
        self.mde.cancel_action(action_id, comment)

    def start_turn(self, start: Start) -> float:
        # Comments go one POST per alert (no batch turn); live response is the MDE API's.
        return 0.0 if start == Start.COMMENT_BATCH else self.mde.start_turn(start)

    def run_live_response(self, machine_id: str, commands: Sequence[Command], comment: str) -> LiveResponseAction:
        return self.mde.run_live_response(machine_id, commands, comment)

    def stream_file(self, action_id: str, index: int, *, max_bytes: int) -> AbstractContextManager[Iterator[bytes]]:
        return self.mde.stream_file(action_id, index, max_bytes=max_bytes)

    def script_output(self, action_id: str, index: int) -> str:
        return self.mde.script_output(action_id, index)

    def ensure_library_file(self, name: str, content: bytes, *, description: str, parameters_description: str) -> None:
        self.mde.ensure_library_file(
            name, content, description=description, parameters_description=parameters_description
        )

    def import_indicators(self, indicators: Sequence[Indicator]) -> list[ImportResult]:
        return self.mde.import_indicators(indicators)

    def find_indicators(self, values: Sequence[str]) -> list[ExistingIndicator]:
        return self.mde.find_indicators(values)

    def own_indicators(self) -> list[ExistingIndicator]:
        return self.mde.own_indicators()

    def count_indicators(self) -> int:
        return self.mde.count_indicators()

    def delete_indicators(self, ids: Sequence[str]) -> None:
        self.mde.delete_indicators(ids)


class GraphIncidents:
    """`IncidentPort` through Graph `security/incidents`, for either alert source."""

    def __init__(self, client: GraphClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"GraphIncidents({self.client!r})"

    def get_incident(self, incident_id: str) -> Incident:
        with translated():
            return to_incident(self.client.get_incident(incident_id))

    def comment_incident(self, incident_id: str, text: str) -> None:
        with translated():
            self.client.add_incident_comment(incident_id, text)

    def tag_incident(self, incident_id: str, tag: str) -> Incident:
        """Read the tags, replace ours, write the whole list back (unless nothing changes). No ETag
        is documented for incidents: a tag someone adds between the read and the write is lost if
        Graph replaces the list; the window is one round trip."""
        with translated():
            current = self.client.get_incident(incident_id)
            wanted = with_verdict_tag(current.custom_tags, tag)
            if tuple(current.custom_tags) == wanted:
                return to_incident(current)
            return to_incident(self.client.set_incident_tags(incident_id, wanted))


_: type[DefenderPort] = GraphAlertSource  # mypy checks here that the adapters are the ports
__: type[IncidentPort] = GraphIncidents
