"""Helpers for the MDE client tests: a scenario, a client wired to the emulator, emulator controls."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from joedefender.adapters.defender import DOCUMENTED_RATES, DefenderClient, RateLimiter
from joedefender.adapters.defender.limiter import Limiter
from joedefender.bootstrap import token_provider
from joedefender.domain.retry import RetryPolicy
from joedefender.settings import Settings
from joedefender_emulators.runner import Emulators
from joedefender_emulators.scenario import parse_scenario

MACHINE = "1a" * 20
BUSY_MACHINE = "2b" * 20
LINUX_PATH = "/tmp/sample.bin"
WINDOWS_PATH = "C:\\Users\\alice\\Downloads\\invoice.exe"
SECRET = "emulator-client-secret"  # the scenario default, set explicitly below
WINDOW_START = "2024-05-01T10:00:00Z"


def alert(number: int, *, status: str = "New", minute: int | None = None, **extra: Any) -> dict[str, Any]:
    at = f"2024-05-01T10:{minute if minute is not None else number:02d}:00.1234567Z"
    return {
        "id": f"da6374729003828388{number:02d}_1364969609",
        "title": f"Alert {number}",
        "severity": "High",
        "status": status,
        "detectionSource": "WindowsDefenderAv",
        "machineId": MACHINE,
        "alertCreationTime": at,
        "lastUpdateTime": at,
        "evidence": [{"entityType": "File", "fileName": "invoice.exe", "$sample": "small"}],
        **extra,
    }


def scenario(**defender: Any) -> dict[str, Any]:
    """A tenant with two machines (one held by an analyst's session) and a few alerts."""
    samples = defender.pop("samples", {})
    time_scale = defender.pop("time_scale", 0.01)
    return {
        "name": "mde-client-tests",
        "time_scale": time_scale,
        "samples": {"small": {"text": "MZ this is a small sample"}, **samples},
        "defender": {
            "client_secret": SECRET,
            "alert_times": "as_given",  # the tests list alerts in a window on these fixed times
            "machines": [
                {
                    "id": MACHINE,
                    "computerDnsName": "pc1.contoso.com",
                    "files": [{"path": WINDOWS_PATH, "sample": "small"}],
                },
                {"id": BUSY_MACHINE, "computerDnsName": "pc2.contoso.com", "busy_until": 1e9},
            ],
            "alerts": [alert(n) for n in range(1, 4)],
            **defender,
        },
    }


@contextmanager
def emulators(**defender: Any) -> Iterator[Emulators]:
    with Emulators(parse_scenario(scenario(**defender))) as emu:
        yield emu


def settings_for(emu: Emulators, **overrides: str) -> Settings:
    return Settings.from_mapping({**emu.settings(), **overrides})


def client_for(
    emu: Emulators,
    *,
    secret: str | None = None,
    max_retry: int = 3,
    retry_timeout: float = 30.0,
    timeout: httpx.Timeout | float = 10.0,
    limiter: Limiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DefenderClient:
    """A client with the test's retry budget, fast backoff and a limiter on the emulator's time scale."""
    settings = settings_for(emu, **({"AzureClientSecret": secret} if secret is not None else {}))
    return DefenderClient(
        settings.defender_api_base_url,
        token_provider(settings),
        ca_bundle=settings.tls_ca_bundle,
        retry=RetryPolicy(max_retries=max_retry, budget=retry_timeout, first=0.02, cap=0.2, jitter="full"),
        timeout=timeout,
        limiter=limiter
        if limiter is not None
        else RateLimiter(DOCUMENTED_RATES, time_scale=emu.scenario.time_scale, sleep=sleep),
        sleep=sleep,
    )


def _admin(emu: Emulators) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(emu.certificates.ca_file))
    return httpx.Client(base_url=emu.defender.url, verify=context, timeout=10.0)


def add_fault(emu: Emulators, **rule: Any) -> None:
    with _admin(emu) as admin:
        admin.post("/_emulator/faults", json=rule).raise_for_status()


def revoke_tokens(emu: Emulators) -> None:
    with _admin(emu) as admin:
        admin.post("/_emulator/tokens/revoke").raise_for_status()


def calls(emu: Emulators) -> dict[str, dict[str, Any]]:
    """Calls, statuses, 429s and drops per route, as the emulator counted them (over HTTP)."""
    with _admin(emu) as admin:
        response = admin.get("/_emulator/calls")
        response.raise_for_status()
        counted: dict[str, dict[str, Any]] = response.json()
        return counted


def timeline(emu: Emulators, route: str) -> list[dict[str, Any]]:
    """The route's exchanges as the emulator saw them: received and answered (real monotonic
    seconds of the emulator's process), status and Retry-After."""
    with _admin(emu) as admin:
        response = admin.get("/_emulator/timeline", params={"route": route})
        response.raise_for_status()
        exchanges: list[dict[str, Any]] = response.json()
        return exchanges


def count(emu: Emulators, route: str, what: str = "calls") -> int:
    return int(calls(emu).get(route, {}).get(what, 0))


def status_count(emu: Emulators, route: str, status: int) -> int:
    return int(calls(emu).get(route, {}).get("statuses", {}).get(str(status), 0))


def wait_for(condition: Callable[[], bool], *, steps: int = 100, step: Callable[[], None]) -> None:
    """Poll `condition`, running `step` (say, advancing the emulated clock) between looks, at most
    `steps` times: the bound counts the emulated world's progress, not the machine's speed."""
    for _ in range(steps):
        if condition():
            return
        step()
    assert condition(), f"condition not met after {steps} steps"
