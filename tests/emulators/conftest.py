"""Fixtures for the MDE emulator tests: an emulator on a scenario, over real TLS sockets, and a
small client that speaks the API exactly as mde-api.md documents it."""

from __future__ import annotations

import base64
import copy
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.mde import MdeEmulator
from joedefender_emulators.scenario import parse_scenario
from joedefender_emulators.tls import EmulatorCertificates, create_certificates

from .graph_fixtures import graph, make_graph  # noqa: F401 - the Graph emulator's fixtures

TENANT = "11111111-2222-4333-8444-555555555555"
CLIENT = "66666666-7777-4888-9999-000000000000"
SECRET = "s3cr3t-value-for-tests"
SCOPE = "https://api.securitycenter.microsoft.com/.default"

ONLINE = "a" * 40  # online all the time; carries files and a quarantined sample
LATER = "b" * 40  # offline until emulated second 3600
BUSY = "c" * 40  # another analyst's live response session holds it until second 1800
NEVER = "d" * 40  # never online

_SCENARIO: dict[str, Any] = {
    "name": "mde-emulator-tests",
    "time_scale": 1.0,
    "samples": {
        "evil": {"text": "MZ evil payload"},
        "quarantined": {"text": "MZ quarantined payload"},
        "other": {"text": "MZ other payload"},
    },
    "defender": {
        "tenant_id": TENANT,
        "client_id": CLIENT,
        "client_secret": SECRET,
        "alert_times": "as_given",  # the filter tests compare with the times written here
        "machines": [
            {
                "id": ONLINE,
                "computerDnsName": "desk-01.contoso.local",
                "files": [{"path": "C:\\Users\\alice\\Downloads\\evil.exe", "sample": "evil"}],
                "quarantine": [
                    {
                        "threat_name": "Trojan:Win32/Emotet!ml",
                        "original_path": "C:\\Users\\alice\\Downloads\\q.exe",
                        "sample": "quarantined",
                    }
                ],
                "extra": {"rbacGroupName": "Workstations", "machineTags": ["finance"]},
            },
            {
                "id": LATER,
                "computerDnsName": "laptop-02.contoso.local",
                "online": [{"start": 3600}],
                "files": [{"path": "D:\\data\\other.dll", "sample": "other"}],
            },
            {"id": BUSY, "computerDnsName": "srv-03.contoso.local", "busy_until": 1800},
            {"id": NEVER, "computerDnsName": "old-04.contoso.local", "online": False},
        ],
        "alerts": [
            {
                "id": "da637000000000000001_1",
                "severity": "High",
                "status": "New",
                "detectionSource": "WindowsDefenderAv",
                "title": "'Emotet' malware was detected",
                "alertCreationTime": "2024-05-01T10:00:00.1234567Z",
                "lastUpdateTime": "2024-05-01T10:05:00Z",
                "machineId": ONLINE,
                "incidentId": 7,
                "vendorSpecificField": {"kept": True},
                "evidence": [
                    {
                        "entityType": "File",
                        "$sample": "evil",
                        "fileName": "evil.exe",
                        "filePath": "C:\\Users\\alice\\Downloads",
                    }
                ],
            },
            {
                "id": "da637000000000000002_2",
                "severity": "Medium",
                "status": "InProgress",
                "detectionSource": "WindowsDefenderAtp",
                "alertCreationTime": "2024-05-02T10:00:00Z",
                "lastUpdateTime": "2024-05-02T11:00:00Z",
                "machineId": LATER,
                "evidence": [{"entityType": "Url", "url": "http://phish.example/login"}],
            },
            {
                "id": "da637000000000000003_3",
                "severity": "Low",
                "status": "Resolved",
                "detectionSource": "CustomerTI",
                "alertCreationTime": "2024-05-03T10:00:00Z",
                "lastUpdateTime": "2024-05-03T12:00:00Z",
                "machineId": ONLINE,
            },
            {
                # Same lastUpdateTime as alert 1: the id breaks the tie.
                "id": "da637000000000000000_0",
                "severity": "Informational",
                "status": "New",
                "detectionSource": "WindowsDefenderAv",
                "alertCreationTime": "2024-05-01T09:00:00Z",
                "lastUpdateTime": "2024-05-01T10:05:00Z",
            },
        ],
    },
}


def mde_scenario_raw() -> dict[str, Any]:
    return copy.deepcopy(_SCENARIO)


class MdeHarness:
    """An emulator plus a client that talks to it the documented way."""

    def __init__(self, emulator: MdeEmulator, clock: EmulatedClock, certificates: EmulatorCertificates) -> None:
        self.emulator = emulator
        self.clock = clock
        self.certificates = certificates
        self.ssl = ssl.create_default_context(cafile=str(certificates.ca_file))
        self.http = httpx.Client(base_url=emulator.url, verify=self.ssl, timeout=30)
        self._token: str | None = None
        self._expires = 0.0

    @property
    def url(self) -> str:
        return self.emulator.url

    def fresh_token(self) -> str:
        response = self.http.post(
            f"/{TENANT}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET, "scope": SCOPE},
        )
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        assert isinstance(token, str)
        return token

    def token(self) -> str:
        """A cached token, renewed once the emulated clock has (nearly) run it out."""
        if self._token is None or self._expires <= self.clock.now().timestamp() + 60:
            self._token = self.fresh_token()
            payload = self._token.split(".")[1]
            self._expires = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
        return self._token

    def call(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        headers.setdefault("Authorization", f"Bearer {token or self.token()}")
        return self.http.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call("POST", path, **kwargs)

    def inspect(self, path: str) -> Any:
        response = self.http.get(f"/_emulator/{path}")
        assert response.status_code == 200, response.text
        return response.json()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def upload(self, name: str, content: bytes, **fields: str) -> httpx.Response:
        return self.post("/api/libraryfiles", files={"file": (name, content)}, data=fields)

    def run_live_response(self, machine_id: str, commands: list[dict[str, Any]], **kwargs: Any) -> httpx.Response:
        return self.post(
            f"/api/machines/{machine_id}/runliveresponse", json={"Commands": commands, "Comment": "test"}, **kwargs
        )

    def action(self, action_id: str) -> dict[str, Any]:
        response = self.get(f"/api/machineactions/{action_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert isinstance(body, dict)
        return body

    def close(self) -> None:
        self.http.close()


def command(kind: str, **params: str) -> dict[str, Any]:
    return {"type": kind, "params": [{"key": k, "value": v} for k, v in params.items()]}


MakeMde = Callable[..., MdeHarness]


@pytest.fixture
def mde_certificates(tmp_path: Path) -> EmulatorCertificates:
    return create_certificates(tmp_path)


@pytest.fixture(scope="session")
def _mde_stoppers() -> Iterator[list[threading.Thread]]:
    """Stopping a server waits out its poll interval (half a second): do it in the background
    and join all of them once, at the end of the session."""
    stoppers: list[threading.Thread] = []
    yield stoppers
    for thread in stoppers:
        thread.join(timeout=10)


@pytest.fixture
def make_mde(mde_certificates: EmulatorCertificates, _mde_stoppers: list[threading.Thread]) -> Iterator[MakeMde]:
    """Start an emulator on a scenario (default: the tests' scenario) with a fresh clock."""
    started: list[MdeHarness] = []

    def make(raw: dict[str, Any] | None = None, *, stepped: bool = False) -> MdeHarness:
        scenario = parse_scenario(raw if raw is not None else mde_scenario_raw())
        clock = EmulatedClock(scenario.time_scale, stepped=stepped)
        emulator = MdeEmulator(scenario, clock, mde_certificates).start()
        harness = MdeHarness(emulator, clock, mde_certificates)
        started.append(harness)
        return harness

    yield make
    for harness in started:
        harness.close()
        stopper = threading.Thread(target=harness.emulator.stop, daemon=True)
        stopper.start()
        _mde_stoppers.append(stopper)


@pytest.fixture
def mde(make_mde: MakeMde) -> MdeHarness:
    """An emulator whose clock moves only when the test advances it: what a test asserts about
    an action's state at emulated second 4.9 holds however long the machine takes to get there."""
    return make_mde(stepped=True)
