"""Helpers for the Joe Sandbox emulator tests: an emulator on a scenario, the official jbxapi client
aimed at it, raw requests for what jbxapi never sends, and the inspection routes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jbxapi
import requests

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.joe import JoeEmulator
from joedefender_emulators.scenario import parse_scenario

API_KEY = "jbx-emu-T3st-Key-71c9e0a4"

# A small world: three samples with verdicts keyed three ways, and a URL verdict.
SAMPLES: dict[str, Any] = {
    "evil": {"text": "MZ evil payload"},
    "meh": {"text": "MZ suspicious payload"},
    "plain": {"text": "MZ plain payload"},
}
VERDICTS: list[dict[str, Any]] = [
    {
        "sample": "evil",
        "detection": "malicious",
        "score": 96,
        "threatname": "Emotet",
        "classification": "ransomware",
        "systems": ["w10x64_22h2", "w11x64_22h2"],
        "iocs": {
            "domains": [{"value": "c2.evil.example", "malicious": True}, {"value": "cdn.example.org"}],
            "ips": [{"value": "203.0.113.7", "malicious": True}],
            "urls": [{"value": "http://c2.evil.example/gate.php", "malicious": True}],
            "dropped": [{"sha256": "AB" * 32, "name": "C:\\Users\\u\\AppData\\x.dll", "malicious": True}],
        },
    },
    {"sample": "meh", "detection": "suspicious", "score": 55, "systems": ["w7x64_sp1_office"]},
    {"url": "http://phish.example/login", "detection": "malicious", "score": 88, "threatname": "Phish"},
]


def scenario_raw(**joe: Any) -> dict[str, Any]:
    """A scenario with SAMPLES and VERDICTS; `joe` overrides or extends its Joe part."""
    return {
        "name": "joe-emulator-test",
        "samples": SAMPLES,
        "joe": {"api_key": API_KEY, "verdicts": VERDICTS, **joe},
    }


@contextmanager
def running_joe(raw: dict[str, Any] | None = None) -> Iterator[JoeEmulator]:
    scenario = parse_scenario(raw if raw is not None else scenario_raw())
    with JoeEmulator(scenario, EmulatedClock(scenario.time_scale)) as emulator:
        yield emulator


def client(emulator: JoeEmulator, apikey: str = API_KEY, **kwargs: Any) -> Any:
    """The official client, unmodified, aimed at the emulator (`apiurl` = web base + "/api")."""
    return jbxapi.JoeSandbox(apikey=apikey, apiurl=emulator.url + "/api", accept_tac=True, **kwargs)


def raw_post(
    emulator: JoeEmulator,
    endpoint: str,
    data: dict[str, Any] | list[tuple[str, Any]] | None = None,
    files: dict[str, Any] | None = None,
) -> requests.Response:
    """A request jbxapi would never make (no key, unknown fields), to see the server's own answer."""
    return requests.post(f"{emulator.url}/api/v2/{endpoint}", data=data, files=files, timeout=10)


def error_of(response: requests.Response) -> tuple[int, str]:
    error = response.json()["errors"][0]
    return error["code"], error["message"]


def inspect(emulator: JoeEmulator, what: str) -> Any:
    response = requests.get(f"{emulator.url}/_emulator/{what}", timeout=10)
    response.raise_for_status()
    return response.json()


def calls(emulator: JoeEmulator, route: str) -> int:
    return int(inspect(emulator, "calls").get(route, {}).get("calls", 0))


def submission_record(emulator: JoeEmulator, submission_id: str) -> dict[str, Any]:
    records = [s for s in inspect(emulator, "submissions") if s["id"] == submission_id]
    assert len(records) == 1, records
    return dict(records[0])


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until `condition` holds (for effects the server records after answering)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
