"""Helpers for the Graph adapter tests: the emulators of a Graph scenario, clients wired to them the
way bootstrap wires them, and the Graph emulator's controls."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from joedefender.adapters.defender import DefenderAdapter, RateLimiter
from joedefender.adapters.defender.limiter import Limiter
from joedefender.adapters.graph import GRAPH_RATES, GraphAlertSource, GraphClient, GraphIncidents
from joedefender.bootstrap import token_provider
from joedefender.domain.retry import RetryPolicy
from joedefender.settings import Settings
from joedefender_emulators.runner import Emulators
from joedefender_emulators.scenario import parse_scenario
from tests.clients.mde_fixtures import client_for
from tests.emulators.graph_fixtures import MDE, graph_alert, graph_scenario

__all__ = ["MDE", "add_fault", "alert_source", "graph_alert", "graph_client_for", "graph_scenario", "graph_world"]


@contextmanager
def graph_world(raw: dict[str, Any] | None = None) -> Iterator[Emulators]:
    with Emulators(parse_scenario(raw or graph_scenario())) as emu:
        yield emu


def settings_for(emu: Emulators, **overrides: str) -> Settings:
    return Settings.from_mapping({**emu.settings(), **overrides})


def graph_client_for(
    emu: Emulators,
    *,
    limiter: Limiter | None = None,
    max_retry: int = 3,
    retry_timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> GraphClient:
    """A Graph client with the test's retry budget, fast backoff, and Graph's limiter on the
    emulator's time scale (as bootstrap builds it, with the Graph audience)."""
    settings = settings_for(emu)
    return GraphClient(
        settings.graph_api_base_url,
        token_provider(settings, scope=settings.graph_scope),
        ca_bundle=settings.tls_ca_bundle,
        retry=RetryPolicy(max_retries=max_retry, budget=retry_timeout, first=0.02, cap=0.2, jitter="full"),
        timeout=10.0,
        limiter=limiter
        if limiter is not None
        else RateLimiter(GRAPH_RATES, time_scale=emu.scenario.time_scale, sleep=sleep),
        sleep=sleep,
    )


@contextmanager
def alert_source(emu: Emulators, *, service_sources: tuple[str, ...] = (MDE,)) -> Iterator[GraphAlertSource]:
    """The port `AlertSource=graph` runs on: Graph for alerts, the MDE adapter for machines."""
    with graph_client_for(emu) as graph, client_for(emu) as mde:
        yield GraphAlertSource(graph, DefenderAdapter(mde), service_sources=service_sources)


@contextmanager
def incidents_port(emu: Emulators) -> Iterator[GraphIncidents]:
    with graph_client_for(emu) as graph:
        yield GraphIncidents(graph)


def _admin(emu: Emulators) -> httpx.Client:
    return httpx.Client(base_url=emu.graph.url, verify=emu.certificates.client_context(), timeout=10.0)


def add_fault(emu: Emulators, **rule: Any) -> None:
    with _admin(emu) as admin:
        admin.post("/_emulator/faults", json=rule).raise_for_status()


def inspect(emu: Emulators, path: str, **params: str) -> Any:
    with _admin(emu) as admin:
        response = admin.get(f"/_emulator/{path}", params=params)
        response.raise_for_status()
        return response.json()


def calls(emu: Emulators, route: str, what: str = "calls") -> int:
    return int(inspect(emu, "calls").get(route, {}).get(what, 0))


def graph_comments(emu: Emulators, alert_id: str) -> list[str]:
    """The alert's comments as Graph shows them (the inspection surface, no token)."""
    alert = next(a for a in inspect(emu, "alerts")["value"] if a["id"] == alert_id)
    return [str(c["comment"]) for c in alert["comments"]]


def mde_comments(emu: Emulators, alert_id: str) -> list[str]:
    """The same alert's comments as the MDE API's store holds them."""
    with httpx.Client(verify=emu.certificates.client_context(), timeout=10.0) as http:
        alerts = http.get(f"{emu.defender.url}/_emulator/alerts").json()["value"]
    return [str(c["comment"]) for c in next(a for a in alerts if a["id"] == alert_id)["comments"]]


def incident(emu: Emulators, incident_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(i for i in inspect(emu, "incidents")["value"] if i["id"] == incident_id)
    return found
