"""A test world: both emulators on a scenario, and the connector wired to them with real clients.

Everything goes over real sockets: the connector's DefenderClient and JoeSandboxClient talk to the
emulators exactly as they would to Defender and Joe Sandbox.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from joedefender.adapters.graph import Alert as GraphAlert
from joedefender.adapters.graph import GraphClient
from joedefender.adapters.graph import Incident as GraphIncident
from joedefender.bootstrap import Connector, graph_client, open_connector
from joedefender.hosts.standalone.workers import WorkerPool
from joedefender.pipeline.clock import Clock
from joedefender.settings import Settings
from joedefender_emulators.runner import Emulators
from joedefender_emulators.scenario import Scenario, load_scenario, parse_scenario


class World:
    def __init__(self, scenario: Scenario, state_dir: Path, **settings: str) -> None:
        self.scenario = scenario
        self.emulators = Emulators(scenario).start()
        self.state_path = state_dir / "joedefender.db"
        self.values = self.emulators.settings() | {"StatePath": str(self.state_path), "Workers": "4"} | settings
        self.settings = Settings.from_mapping(self.values)
        self._http = httpx.Client(verify=self.emulators.certificates.client_context(), timeout=30)
        self._graph_api: GraphClient | None = None

    def close(self) -> None:
        self._http.close()
        if self._graph_api is not None:
            self._graph_api.close()
        self.emulators.stop()

    @contextmanager
    def connector(self) -> Iterator[Connector]:
        with open_connector(self.settings, clock=Clock(scale=self.scenario.time_scale)) as connector:
            yield connector

    def process(self, *alert_ids: str, timeout: float = 60.0) -> None:
        """Take the alerts in and run the workers until nothing is left to do."""
        with self.connector() as connector:
            for alert_id in alert_ids:
                connector.app.receive(alert_id, source="test")
            drain(connector, timeout)

    # -- what the emulators hold ----------------------------------------------------------------

    def defender(self, path: str) -> Any:
        response = self._http.get(f"{self.emulators.defender.url}{path}")
        response.raise_for_status()
        body = response.json()
        return body["value"] if isinstance(body, dict) and "value" in body else body

    def graph(self, path: str) -> Any:
        response = self._http.get(f"{self.emulators.graph.url}{path}")
        response.raise_for_status()
        body = response.json()
        return body["value"] if isinstance(body, dict) and "value" in body else body

    def graph_alert(self, alert_id: str) -> GraphAlert:
        """The alert as Graph's API shows it (`GET /v1.0/security/alerts_v2/{id}`, with its comments)."""
        return self._graph().get_alert(alert_id)

    def graph_incident(self, incident_id: str) -> GraphIncident:
        """The incident as Graph's API shows it (`GET /v1.0/security/incidents/{id}`: tags, comments)."""
        return self._graph().get_incident(incident_id)

    def _graph(self) -> GraphClient:
        """A Graph client of the connector's app registration, as bootstrap builds it."""
        if self._graph_api is None:
            self._graph_api = graph_client(self.settings, time_scale=self.scenario.time_scale)
        return self._graph_api

    def joe(self, path: str) -> Any:
        response = self._http.get(f"{self.emulators.joe.url}{path}")
        response.raise_for_status()
        return response.json()

    def comments(self, alert_id: str) -> list[str]:
        alert = next(a for a in self.defender("/_emulator/alerts") if a["id"] == alert_id)
        return [str(c["comment"]) for c in alert.get("comments") or []]

    def submissions(self) -> list[dict[str, Any]]:
        return list(self.joe("/_emulator/submissions"))

    def live_responses(self, machine_id: str | None = None) -> list[dict[str, Any]]:
        actions = [a for a in self.defender("/_emulator/machineactions") if a.get("type") == "LiveResponse"]
        return [a for a in actions if machine_id is None or a.get("machineId") == machine_id]

    def getfiles(self, machine_id: str) -> list[str]:
        """The paths of every GetFile command sent to the machine, in order."""
        return [
            p["value"]
            for action in self.live_responses(machine_id)
            for c in action["commands"]
            if c["command"]["type"] == "GetFile"
            for p in c["command"]["params"]
        ]

    def calls(self, route: str) -> int:
        return int(self.defender("/_emulator/calls").get(route, {}).get("calls", 0))


def drain(connector: Connector, timeout: float) -> None:
    """Run a worker pool until the queue is empty; fail the test if that takes over `timeout`."""
    workers = WorkerPool(connector.app, connector.settings.workers)
    workers.start()
    deadline = time.monotonic() + timeout
    try:
        while not workers.wait_idle_for(0.5):
            if time.monotonic() > deadline:
                items = [item.key for item in connector.store.items()]
                raise AssertionError(f"the connector did not finish within {timeout} s; queued: {items}")
    finally:
        workers.stop()


def scenario(raw: dict[str, Any] | None = None) -> Scenario:
    return load_scenario() if raw is None else parse_scenario(raw)
