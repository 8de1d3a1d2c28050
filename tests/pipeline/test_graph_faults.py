"""Graph's comment calls when the answer is lost, late or throttled, with Graph as the alert source
and verdicts on incidents: every alert ends with exactly one comment and the incident with one
comment per sample and its tag, nothing written twice, nothing lost.

- a comment POST (an alert's or the incident's) carried out, then answered with a 500 or its
  connection dropped (`after`): the step reads the comments back before writing again;
- a tag PATCH carried out and its answer lost: written again only if the tags differ;
- a 429 with `Retry-After`: waited out, then the write goes through once;
- a comment carried out after the client gave up waiting (held past its timeout): its comments are
  read back only once it must have landed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from joedefender.adapters.defender import DefenderAdapter
from joedefender.adapters.graph import GraphIncidents
from joedefender.bootstrap import Connector, alert_source, defender_client, graph_client, open_connector
from joedefender.domain.comments import MARKER_PREFIX
from joedefender.pipeline.clock import Clock
from tests.pipeline.builders import alert, machine, world
from tests.world import World, drain, scenario

WorldFactory = Callable[..., World]

_URL_A, _URL_B = "http://phish.example/login", "http://fake-bank.example/verify"
_ALERT_COMMENTS = r"^/v1\.0/security/alerts_v2/.+/comments$"
_INCIDENT_COMMENTS = r"^/v1\.0/security/incidents/.+/comments$"
_INCIDENT_71 = "/v1.0/security/incidents/71"
_SETTINGS = {"AlertSource": "graph", "DefenderIncidentTags": "true", "DefenderIncidentComments": "true"}


def _world(
    make_world: WorldFactory, faults: list[dict[str, Any]], time_scale: float = 0.002, **settings: str
) -> tuple[World, list[str]]:
    """Two alerts of incident 71 carry URL A (one comment call each, as Graph has no batch); a third,
    of incident 72, URL B. Incident 71 has an analyst's tag."""
    alerts = [
        alert(1, 1, {"entityType": "Url", "url": _URL_A}),
        alert(2, 1, {"entityType": "Url", "url": _URL_A}),
        alert(3, 1, {"entityType": "Url", "url": _URL_B}),
    ]
    raw = world(
        samples={},
        machines=[machine(1)],
        alerts=[a | {"incidentId": 71 if n < 2 else 72} for n, a in enumerate(alerts)],
        verdicts=[
            {"url": _URL_A, "detection": "malicious", "score": 80},
            {"url": _URL_B, "detection": "suspicious", "score": 60},
        ],
        time_scale=time_scale,
    )
    raw["graph"] = {"incidents": [{"id": "71", "customTags": ["Escalated"]}]}
    raw["faults"] = faults
    return make_world(scenario(raw), **_SETTINGS, **settings), [a["id"] for a in alerts]


def _check(w: World, ids: list[str]) -> None:
    for alert_id, headline in zip(
        ids, ("MALICIOUS (score 80", "MALICIOUS (score 80", "SUSPICIOUS (score 60"), strict=True
    ):
        ours = [c.comment or "" for c in w.graph_alert(alert_id).comments if MARKER_PREFIX in (c.comment or "")]
        assert len(ours) == 1, (alert_id, ours)
        assert ours[0].startswith(f"Joe Sandbox: {headline}")
    for incident_id, tags, headline in (
        ("71", ["Escalated", "JoeSandbox:malicious"], "MALICIOUS (score 80/100)"),
        ("72", ["JoeSandbox:suspicious"], "SUSPICIOUS (score 60/100)"),
    ):
        incident = w.graph_incident(incident_id)
        assert incident.custom_tags == tags
        ours = [(c.comment or "").splitlines()[0] for c in incident.comments if MARKER_PREFIX in (c.comment or "")]
        assert ours == [f"Joe Sandbox: {headline}"]


def _run(w: World, ids: list[str], connector: Connector | None = None) -> list[tuple[str, str, str]]:
    """Take the alerts in, run until done; the alerts' and the incident's history lines."""
    with w.connector() if connector is None else _given(connector) as c:
        for alert_id in ids:
            c.app.receive(alert_id, source="test")
        drain(c, 60)
        subjects = [f"alert:{alert_id}" for alert_id in ids] + ["incident:71", "incident:72"]
        return [(line.step, line.outcome, line.detail) for s in subjects for line in c.store.history(s)]


@contextmanager
def _given(connector: Connector) -> Iterator[Connector]:
    yield connector


def _fired(w: World) -> list[int]:
    return [rule["fired"] for rule in w.graph("/_emulator/faults")]


@pytest.mark.parametrize(
    ("path", "lost"),
    [(_ALERT_COMMENTS, {"status": 500}), (_INCIDENT_COMMENTS, {"drop": True})],
    ids=["alert-500", "incident-dropped"],
)
def test_a_graph_comment_applied_with_its_answer_lost_is_read_back_not_written_twice(
    make_world: WorldFactory, lost: dict[str, Any], path: str
) -> None:
    fault = {"service": "graph", "method": "POST", "path": path, "after": True, "times": 1} | lost
    w, ids = _world(make_world, [fault])
    lines = _run(w, ids)
    assert _fired(w) == [1]
    _check(w, ids)
    step = "write-back" if path == _ALERT_COMMENTS else "incident comment"
    assert (step, "already commented") in [line[:2] for line in lines], lines


def test_a_tag_applied_with_its_answer_lost_is_not_written_again(make_world: WorldFactory) -> None:
    """The client sends the PATCH twice (one retry), both carried out, both answers lost: the step
    fails, and when it runs again it reads the tags, finds ours, and writes nothing."""
    fault = {"service": "graph", "method": "PATCH", "path": f"^{_INCIDENT_71}$", "after": True, "status": 500}
    w, ids = _world(make_world, [fault | {"times": 2}], DefenderApiMaxRetry="1")
    lines = _run(w, ids)
    assert _fired(w) == [2]
    _check(w, ids)
    assert ("incident", "will retry") in [line[:2] for line in lines], lines
    patches = [e for e in w.graph("/_emulator/timeline?route=incidents.update") if e["path"] == _INCIDENT_71]
    assert len(patches) == 2  # the client's two; the step's second run wrote nothing


@pytest.mark.parametrize("path", [_ALERT_COMMENTS, _INCIDENT_COMMENTS], ids=["alert", "incident"])
def test_a_429_with_retry_after_is_waited_out_and_the_comment_written_once(make_world: WorldFactory, path: str) -> None:
    fault = {"service": "graph", "method": "POST", "path": path, "status": 429, "retry_after": 1, "times": 2}
    w, ids = _world(make_world, [fault])
    _run(w, ids)
    assert _fired(w) == [2]
    _check(w, ids)
    timeline = w.graph("/_emulator/timeline")
    throttled = [e for e in timeline if e["status"] == 429]
    last = throttled[-1]
    retried = [e for e in timeline if e["path"] == last["path"] and e["received"] > last["answered"]]
    assert [e["status"] for e in retried] == [200], timeline  # one write after the throttle, no more
    # It came after the Retry-After the 429 asked for (the emulator's own timeline).
    assert retried[0]["received"] - last["answered"] >= 1.0


_CLIENT_TIMEOUT = 1.0  # real seconds the connector's Graph client waits for an answer
_SERVER_TAKES = 1.6  # real seconds the emulator holds the write before it carries it out


@contextmanager
def _impatient_connector(w: World) -> Iterator[Connector]:
    """The connector with a Graph client that gives up after `_CLIENT_TIMEOUT` seconds."""
    scale = w.scenario.time_scale
    graph = graph_client(w.settings, time_scale=scale, timeout=_CLIENT_TIMEOUT)
    mde = defender_client(w.settings, time_scale=scale)
    source = alert_source(w.settings, DefenderAdapter(mde), graph)
    with (
        graph,
        mde,
        open_connector(w.settings, clock=Clock(scale=scale), defender=source, incidents=GraphIncidents(graph)) as c,
    ):
        yield c


@pytest.mark.parametrize("path", [_ALERT_COMMENTS, _INCIDENT_COMMENTS], ids=["alert", "incident"])
def test_a_graph_comment_applied_after_the_client_gave_up_is_there_once(make_world: WorldFactory, path: str) -> None:
    fault = {"service": "graph", "method": "POST", "path": path, "delay": _SERVER_TAKES, "times": 1}
    w, ids = _world(make_world, [fault], time_scale=0.01)
    with _impatient_connector(w) as connector:
        lines = _run(w, ids, connector)
    assert _fired(w) == [1]
    _check(w, ids)
    step = "write-back" if path == _ALERT_COMMENTS else "incident comment"
    outcomes = [outcome for s, outcome, _ in lines if s == step]
    assert "outcome unknown" in outcomes
    assert "already commented" in outcomes
