"""An instance SIGKILLed in the middle of a step: its work item is taken over within 2 minutes.

The Functions host hides a message for 10 minutes while its function runs and brings it back
only then if the instance died; the step's lease is 60 s (renewed while the step runs), and the
relay timer wakes an item whose lease ran out without its holder. Here the victim, a process of
its own, holds the sample's collection step while its live response request hangs; it is killed;
the survivor must own the item within 2 nominal minutes, find the action the victim started by its
nonce, and finish: one comment, one submission, no 429.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import azure.functions as func
from joedefender.domain.comments import MARKER_PREFIX
from joedefender.hosts.azure import timers
from joedefender.hosts.azure.entry import build_from_environment
from joedefender.hosts.azure.functions import RELAY_PERIOD
from joedefender.hosts.azure.runtime import Runtime
from joedefender_emulators.scenario import Scenario, parse_scenario
from tests.azure.functions import call
from tests.azure.rig import AppInstance, start_instance, start_process, wait_for
from tests.world import World

pytestmark = pytest.mark.slow
WorldFactory = Callable[..., World]

_SCALE = 0.05  # the step lease (60 s) is 3 real seconds: above the 2 s a lease is at the least
_TAKEN_OVER_WITHIN = 120.0  # nominal seconds
_HOST_HIDES = 600.0  # nominal seconds the host hides a message whose instance died
_MACHINE = "1e5b0c8d2f4a6e9b3c7d1f0a2b4c6d8e9f1a3b5c"
_ALERT = "da638640000000000001_1001"
_EVIDENCE = {"entityType": "File", "$sample": "invoice", "fileName": "invoice.exe", "filePath": "C:\\Users\\a"}
_VERDICT = {"sample": "invoice", "detection": "malicious", "score": 90}


def _scenario() -> Scenario:
    return parse_scenario(
        {
            "name": "takeover",
            "time_scale": _SCALE,
            "samples": {"invoice": {"text": "harmless stand-in"}},
            "defender": {
                "live_response": {"pending_seconds": 5, "command_seconds": 10},
                "machines": [
                    {
                        "id": _MACHINE,
                        "computerDnsName": "ws-01.contoso.local",
                        "files": [{"path": "C:\\Users\\a\\invoice.exe", "sample": "invoice"}],
                    }
                ],
                "alerts": [
                    {
                        "id": _ALERT,
                        "detectionSource": "WindowsDefenderAtp",
                        "severity": "High",
                        "status": "New",
                        "machineId": _MACHINE,
                        "lastUpdateTime": "2026-11-27T08:00:05Z",
                        "evidence": [
                            {
                                "entityType": "File",
                                "$sample": "invoice",
                                "fileName": "invoice.exe",
                                "filePath": "C:\\Users\\a",
                            }
                        ],
                    }
                ],
            },
            "joe": {
                "queue_seconds": 10,
                "analysis_seconds": 60,
                "verdicts": [{"sample": "invoice", "detection": "malicious", "score": 90}],
            },
            # The victim's live response request hangs long enough to be killed in the middle of it.
            "faults": [
                {"service": "defender", "method": "POST", "path": "/runliveresponse$", "delay": 4.0, "times": 1}
            ],
        }
    )


@pytest.fixture
def setup(make_world: WorldFactory, azurite: Any) -> tuple[World, dict[str, str]]:
    from tests.azurite import unique_prefix

    w = make_world(_scenario())
    environ = w.values | {
        "AzureWebJobsStorage": azurite.connection_string,
        "StoragePrefix": unique_prefix(),
        "PollerEnabled": "false",
    }
    return w, environ


def _relaying(runtime: Runtime, stop: threading.Event) -> None:
    """The relay timer on its schedule, as the platform runs it on a living instance."""
    while not stop.wait(RELAY_PERIOD * _SCALE):
        timers.relay_once(runtime)


def _sending(store: Any, key: str) -> bool:
    """The victim holds the sample's step and has recorded the live response it is starting."""
    held = any(i.key == key and i.owner.startswith("victim-") for i in store.items())
    job = store.get("job", key.split(":", 1)[1])
    attempts = [] if job is None else job.data.get("attempts") or []
    return held and bool(attempts) and attempts[-1].get("outcome") == "running"


def test_an_instance_killed_mid_step_has_its_item_taken_over_within_two_minutes(
    setup: tuple[World, dict[str, str]],
) -> None:
    w, environ = setup
    platform, app = build_from_environment(environ, time_scale=_SCALE, instance="platform")  # no listeners
    store = platform.hosted().store
    victim = start_process(environ, time_scale=_SCALE, name="victim", in_flight=_HOST_HIDES * _SCALE)
    survivor: AppInstance | None = None
    stop = threading.Event()
    relay = threading.Thread(target=_relaying, args=(platform, stop), daemon=True)
    try:
        body = json.dumps({"id": _ALERT}).encode()
        request = func.HttpRequest(
            method="POST", url="/api/alerts", body=body, headers={"Content-Type": "application/json"}
        )
        assert call(app, "alerts", request).status_code == 202
        wait_for(lambda: any(i.key.startswith("sample:") for i in store.items()), 60, "the victim's triage")
        key = next(i.key for i in store.items() if i.key.startswith("sample:"))
        wait_for(lambda: _sending(store, key), 60, "the victim starting the live response")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed = time.monotonic()
        survivor = start_instance(environ, time_scale=_SCALE, name="survivor")
        relay.start()

        def taken_over() -> bool:
            return all(not i.owner.startswith("victim-") for i in store.items() if i.key == key)

        wait_for(taken_over, 2 * _TAKEN_OVER_WITHIN * _SCALE, "the survivor taking the item over")
        took = (time.monotonic() - killed) / _SCALE
        assert took <= _TAKEN_OVER_WITHIN, took
        wait_for(lambda: store.pending() == 0, 60, "the queue draining")
        ours = [c for c in w.comments(_ALERT) if MARKER_PREFIX in c]
        assert len(ours) == 1, ours
        assert len(w.submissions()) == 1
        calls = w.defender("/_emulator/calls")
        assert sum(route["throttled"] for route in calls.values()) == 0, calls
    finally:
        stop.set()
        if victim.poll() is None:
            victim.kill()
        if survivor is not None:
            survivor.stop()
        platform.close()
