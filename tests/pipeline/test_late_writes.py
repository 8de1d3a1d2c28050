"""A comment the server applies after the client gave up waiting (an acceptance run saw Defender
apply a PATCH 65 s after it was sent): the look-before-repeat must not read the alert's comments
while that write is still in flight, or it writes the comment a second time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from joedefender.adapters.defender import DefenderAdapter
from joedefender.bootstrap import Connector, defender_client, open_connector
from joedefender.domain.comments import MARKER_PREFIX
from joedefender.pipeline.clock import Clock
from tests.pipeline.builders import alert, machine, world
from tests.world import World, drain, scenario

WorldFactory = Callable[..., World]

_URL = "http://phish.example/login"
_CLIENT_TIMEOUT = 1.0  # real seconds the connector's Defender client waits for an answer
_SERVER_TAKES = 1.6  # real seconds the emulator holds the write before it carries it out


@contextmanager
def _impatient_connector(w: World) -> Iterator[Connector]:
    """The connector with a Defender client that gives up after `_CLIENT_TIMEOUT` seconds."""
    client = defender_client(w.settings, time_scale=w.scenario.time_scale, timeout=_CLIENT_TIMEOUT)
    with (
        client,
        open_connector(w.settings, clock=Clock(scale=w.scenario.time_scale), defender=DefenderAdapter(client)) as c,
    ):
        yield c


@pytest.mark.parametrize(("alerts", "method", "path"), [(1, "PATCH", "^/api/alerts/da"), (3, "POST", "batchUpdate$")])
def test_a_comment_applied_after_the_client_gave_up_is_on_the_alert_once(
    make_world: WorldFactory, alerts: int, method: str, path: str
) -> None:
    raw = world(
        samples={},
        machines=[machine(1)],
        alerts=[alert(n, 1, {"entityType": "Url", "url": _URL}) for n in range(1, alerts + 1)],
        verdicts=[{"url": _URL, "detection": "malicious", "score": 80}],
        time_scale=0.01,
    )
    # The first comment write is held past the client's timeout, then carried out all the same.
    raw["faults"] = [{"service": "defender", "method": method, "path": path, "delay": _SERVER_TAKES, "times": 1}]
    w = make_world(scenario(raw))
    ids = [a["id"] for a in raw["defender"]["alerts"]]
    with _impatient_connector(w) as connector:
        for alert_id in ids:
            connector.app.receive(alert_id, source="test")
        drain(connector, 60)
        history = [line for alert_id in ids for line in connector.store.history(f"alert:{alert_id}")]
    assert [rule["fired"] for rule in w.defender("/_emulator/faults")] == [1]
    for alert_id in ids:
        ours = [c for c in w.comments(alert_id) if MARKER_PREFIX in c]
        assert len(ours) == 1, (alert_id, ours)
        assert ours[0].startswith("Joe Sandbox: MALICIOUS (score 80/100)")
    # The first write's outcome was unknown, and the comments were read back once it had settled.
    outcomes = [line.outcome for line in history if line.step == "write-back"]
    assert "outcome unknown" in outcomes
    assert outcomes.count("already commented") == alerts
