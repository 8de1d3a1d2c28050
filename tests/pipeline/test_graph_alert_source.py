"""`AlertSource=graph`: the demo's alerts are read from Graph's alerts_v2 (listed by the poller),
their files collected through the MDE API on the machines Graph's evidence names (`mdeDeviceId`),
and each gets exactly one comment through Graph's comment call, seen by both APIs (Graph's
`GET /v1.0/security/alerts_v2/{id}` and the MDE API's alert). Without the incident settings nothing
is written on an incident. (Verdicts on incidents: test_incident_verdicts.py; Graph ids at the
webhook and `process`: tests/hosts/test_graph_hosts.py.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from joedefender.adapters.graph import GraphAlertSource
from joedefender.domain.comments import MARKER_PREFIX
from joedefender.hosts.standalone.poller import Poller
from joedefender_emulators.scenario import load_scenario
from tests.pipeline.test_end_to_end import DEMO_HEADLINES
from tests.world import World, drain

WorldFactory = Callable[..., World]


def test_the_demo_through_graph_ends_as_through_the_mde_api(make_world: WorldFactory) -> None:
    demo = load_scenario().model_copy(update={"time_scale": 0.002})
    w = make_world(demo, JoeSandboxResubmitAfterDays="7", AlertSource="graph")
    with w.connector() as connector:
        assert isinstance(connector.defender, GraphAlertSource)
        poller = Poller(connector.app, interval=0, lookback=timedelta(days=3650))
        assert poller.poll_once() == 13
        drain(connector, 90)

    graph_calls = {route: counted["calls"] for route, counted in w.graph("/_emulator/calls").items()}
    assert graph_calls["alerts_v2.list"] >= 1
    assert graph_calls["alerts_v2.comments"] == len(DEMO_HEADLINES)
    mde_calls = w.defender("/_emulator/calls")
    assert not {route for route in mde_calls if route.startswith("alerts.")}  # no alert through the MDE API
    assert mde_calls["liveresponse.run"]["calls"] >= 1
    graph_alerts = {a["id"]: a for a in w.graph("/_emulator/alerts")}
    for alert_id, headline in DEMO_HEADLINES.items():
        ours = [c for c in w.comments(alert_id) if MARKER_PREFIX in c]  # the MDE API's view
        assert len(ours) == 1, (alert_id, ours)
        assert ours[0].startswith(f"Joe Sandbox: {headline}"), ours[0]
        assert [c.comment for c in w.graph_alert(alert_id).comments] == ours  # Graph's API
    assert not {route for route in graph_calls if route.startswith("incidents.")}  # the settings are off
    assert w.graph_incident("501").custom_tags == ["Finance", "VIP"]
    collected_on = {a["machineId"] for a in w.live_responses()}
    devices = {
        e["mdeDeviceId"]
        for a in graph_alerts.values()
        for e in a["evidence"]
        if e["@odata.type"].endswith("deviceEvidence")
    }
    assert collected_on <= devices
