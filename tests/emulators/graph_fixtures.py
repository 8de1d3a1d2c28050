"""A Graph emulator beside the MDE one (the runner's world) and a small client that speaks Graph
as the Microsoft Graph docs document it: a token for the Graph audience, then /v1.0/security calls."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from joedefender_emulators.runner import Emulators
from joedefender_emulators.scenario import parse_scenario

TENANT = "11111111-2222-4333-8444-555555555555"
CLIENT = "66666666-7777-4888-9999-000000000000"
SECRET = "s3cr3t-value-for-graph-tests"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MDE_SCOPE = "https://api.securitycenter.microsoft.com/.default"

DESK = "a" * 40
LAPTOP = "b" * 40
MDE = "microsoftDefenderForEndpoint"


def graph_alert(number: int, **extra: Any) -> dict[str, Any]:
    """An MDE alert of the scenario (created a minute apart, updated ten minutes after)."""
    return {
        "id": f"da6370000000000000{number:02d}_{number}",
        "incidentId": 70 + number % 3,
        "severity": "High",
        "status": "New",
        "detectionSource": "WindowsDefenderAv",
        "title": f"Alert {number}",
        "alertCreationTime": f"2024-05-01T10:{number:02d}:00Z",
        "lastUpdateTime": f"2024-05-01T10:{number + 10:02d}:00Z",
        "machineId": DESK,
        "computerDnsName": "desk-01.contoso.local",
        "evidence": [],
        **extra,
    }


def graph_scenario(alerts: list[dict[str, Any]] | None = None, **graph: Any) -> dict[str, Any]:
    """A tenant whose alerts carry every evidence kind the connector reads, plus a standalone
    alert, a tuned (suppressed) one and one raised by Defender for Office 365."""
    if alerts is None:
        alerts = [
            graph_alert(
                1,
                threatName="Trojan:Win32/Emotet!ml",
                evidence=[
                    {
                        "entityType": "File",
                        "$sample": "evil",
                        "fileName": "evil.exe",
                        "filePath": "C:\\Users\\alice\\Downloads",
                        "detectionStatus": "Prevented",
                    },
                    {
                        "entityType": "Process",
                        "$sample": "loader",
                        "fileName": "loader.exe",
                        "filePath": "C:\\Temp",
                        "processId": 4780,
                        "processCommandLine": "loader.exe -q",
                        "parentProcessFileName": "explorer.exe",
                        "parentProcessFilePath": "C:\\Windows",
                    },
                    {"entityType": "Url", "url": "http://phish.example/login"},
                    {"entityType": "User", "accountName": "alice", "domainName": "CONTOSO"},
                ],
            ),
            graph_alert(2, detectionSource="WindowsDefenderAtp", machineId=LAPTOP, status="InProgress"),
            graph_alert(3, incidentId=None),  # standalone: not promoted to an incident
            graph_alert(4, graph={"suppressed": True}),  # a tuning rule suppressed it
            graph_alert(
                5,
                detectionSource=None,
                machineId=None,
                graph={
                    "serviceSource": "microsoftDefenderForOffice365",
                    "detectionSource": "microsoftDefenderForOffice365",
                    "evidence": [
                        {"@odata.type": "#microsoft.graph.security.urlEvidence", "url": "http://mail.example/x"}
                    ],
                },
            ),
        ]
    return {
        "name": "graph-emulator-tests",
        "time_scale": 1.0,
        "samples": {"evil": {"text": "MZ evil payload"}, "loader": {"text": "MZ loader payload"}},
        "defender": {
            "tenant_id": TENANT,
            "client_id": CLIENT,
            "client_secret": SECRET,
            "alert_times": "as_given",
            "machines": [
                {"id": DESK, "computerDnsName": "desk-01.contoso.local", "osPlatform": "Windows11"},
                {"id": LAPTOP, "computerDnsName": "laptop-02.contoso.local", "osPlatform": "Ubuntu"},
            ],
            "alerts": copy.deepcopy(alerts),
        },
        "graph": {
            "incidents": [
                {
                    "id": "71",
                    "displayName": "Emotet on desk-01",
                    "customTags": ["VIP", "Finance"],
                    "comments": [
                        {
                            "comment": "looking",
                            "createdByDisplayName": "ana@contoso.com",
                            "createdDateTime": "2024-05-01T11:00:00Z",
                        }
                    ],
                },
            ],
            **graph,
        },
    }


class GraphHarness:
    """The emulators of one scenario and a documented-way client of their Graph API."""

    def __init__(self, emulators: Emulators) -> None:
        self.emulators = emulators
        self.http = httpx.Client(verify=emulators.certificates.client_context(), timeout=30)
        self._tokens: dict[str, str] = {}

    @property
    def url(self) -> str:
        return self.emulators.graph.url

    def fresh_token(self, scope: str = GRAPH_SCOPE) -> str:
        response = self.http.post(
            f"{self.emulators.defender.url}/{TENANT}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET, "scope": scope},
        )
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        assert isinstance(token, str)
        return token

    def token(self, scope: str = GRAPH_SCOPE) -> str:
        if scope not in self._tokens:
            self._tokens[scope] = self.fresh_token(scope)
        return self._tokens[scope]

    def call(self, method: str, path: str, *, scope: str = GRAPH_SCOPE, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(scope)}", **kwargs.pop("headers", {})}
        target = path if path.startswith("https://") else f"{self.url}/v1.0/security{path}"
        return self.http.request(method, target, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call("GET", path, **kwargs)

    def mde(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(MDE_SCOPE)}", **kwargs.pop("headers", {})}
        return self.http.request(method, f"{self.emulators.defender.url}{path}", headers=headers, **kwargs)

    def inspect(self, path: str) -> Any:
        response = self.http.get(f"{self.url}/_emulator/{path}")
        assert response.status_code == 200, response.text
        return response.json()

    def close(self) -> None:
        self.http.close()


MakeGraph = Callable[..., GraphHarness]


@pytest.fixture
def make_graph(_mde_stoppers: list[threading.Thread]) -> Iterator[MakeGraph]:
    """The emulators of a scenario (default: the Graph tests'); stopped in the background (conftest)."""
    started: list[GraphHarness] = []

    def make(raw: dict[str, Any] | None = None) -> GraphHarness:
        harness = GraphHarness(Emulators(parse_scenario(raw or graph_scenario())).start())
        started.append(harness)
        return harness

    yield make
    for harness in started:
        harness.close()
        stopper = threading.Thread(target=harness.emulators.stop, daemon=True)
        stopper.start()
        _mde_stoppers.append(stopper)


@pytest.fixture
def graph(make_graph: MakeGraph) -> GraphHarness:
    return make_graph()
