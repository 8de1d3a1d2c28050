"""Helpers for the Joe Sandbox client tests: emulators on a scenario, a client aimed at them, inspection."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from joedefender.adapters.joe import JoeSandboxClient
from joedefender.bootstrap import sandbox_client
from joedefender.settings import Settings
from joedefender_emulators.runner import Emulators
from joedefender_emulators.scenario import parse_scenario

# Distinctive, so a search of any message or repr for it cannot hit by accident.
API_KEY = "jbx-T3st-Key-6f0c2a9d41e7b358"
WRONG_KEY = "jbx-Wr0ng-Key-0d93b1c7e2a4f865"


@contextmanager
def joe_world(joe: Mapping[str, Any] | None = None, samples: Mapping[str, Any] | None = None) -> Iterator[Emulators]:
    """Both emulators on a scenario whose Joe part is `joe` (the API key is always API_KEY)."""
    raw = {
        "name": "joe-client-test",
        "samples": dict(samples or {}),
        "joe": {**(joe or {}), "api_key": API_KEY},
    }
    with Emulators(parse_scenario(raw)) as emulators:
        yield emulators


def settings_for(emulators: Emulators, **overrides: str) -> Settings:
    return Settings.from_mapping({**emulators.settings(), **overrides})


def client_for(
    emulators: Emulators,
    *,
    max_retry: int = 2,
    budget: timedelta = timedelta(minutes=1),
    timeout: float = 5.0,
    **overrides: str,
) -> JoeSandboxClient:
    """A client on the emulator with short backoff, so retry tests take milliseconds, not seconds."""
    settings = settings_for(emulators, **overrides).model_copy(
        update={"joe_sandbox_api_max_retry": max_retry, "joe_sandbox_api_retry_timeout": budget}
    )
    return sandbox_client(settings, timeout=timeout, base_delay=0.01)


def inspect(emulators: Emulators, what: str) -> Any:
    with urllib.request.urlopen(f"{emulators.joe.url}/_emulator/{what}", timeout=10) as response:
        return json.load(response)


def calls(emulators: Emulators, endpoint: str) -> int:
    """How many requests the emulator saw for an endpoint name such as "submission/new"."""
    return int(inspect(emulators, "calls").get(endpoint, {}).get("calls", 0))


def add_fault(emulators: Emulators, **rule: Any) -> None:
    request = urllib.request.Request(
        f"{emulators.joe.url}/_emulator/faults",
        data=json.dumps(rule).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
