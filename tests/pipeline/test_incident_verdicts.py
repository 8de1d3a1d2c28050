"""Verdicts on the incident (`DefenderIncidentTags`, `DefenderIncidentComments`), for either alert
source: the demo's alerts through the poller, and each incident of theirs, as Graph's
`GET /v1.0/security/incidents/{id}` shows it, carries one `JoeSandbox:<verdict>` tag of ours naming
its worst verdict beside the analysts' tags (intact, in their order), and one comment per sample.

The demo's incident 503 is given the URL alert too, so it holds three samples whose verdicts come
in as malicious (the URL, early), clean, then suspicious (the updater, whose machine comes online
last): its tag must name the worst, not the last."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from joedefender.domain.comments import MARKER_PREFIX, has_marker
from joedefender.domain.incidents import is_ours
from joedefender.hosts.standalone.poller import Poller
from joedefender_emulators.scenario import Scenario, load_scenario
from tests.pipeline.test_end_to_end import DEMO_HEADLINES
from tests.world import World, drain

WorldFactory = Callable[..., World]

_URL_ALERT = "da638640000000000006_1006"
# Each incident of the demo's eligible alerts: the tags analysts gave it before the run, the
# headlines of its samples' verdicts, and the tag of ours it must end with.
INCIDENTS = {
    "501": (["Finance", "VIP"], ["MALICIOUS (score 92/100)"], "JoeSandbox:malicious"),
    "502": (["Finance"], ["MALICIOUS (score 100/100)"], "JoeSandbox:malicious"),
    "503": (
        [],
        ["SUSPICIOUS (score 55/100)", "CLEAN (score 4/100)", "MALICIOUS (score 80/100)"],
        "JoeSandbox:malicious",
    ),
    "506": ([], ["MALICIOUS (score 96/100)"], "JoeSandbox:malicious"),
}
UNTOUCHED = ("507", "508", "509")  # the incidents of the alerts the filters skip
_ANALYST_COMMENT = "Looking into the loader"  # on incident 502 before the run
# The demo's alerts that pass the filters: those commented, one without a file or URL, and one
# whose processes are all the operating system's.
_PASSING = len(DEMO_HEADLINES) + 2


def demo_with_a_mixed_incident(time_scale: float = 0.002) -> Scenario:
    demo = load_scenario()
    alerts = [a | {"incidentId": 503} if a["id"] == _URL_ALERT else a for a in demo.defender.alerts]
    defender = demo.defender.model_copy(update={"alerts": alerts})
    return demo.model_copy(update={"time_scale": time_scale, "defender": defender})


def _incident_samples(demo: Scenario) -> set[tuple[str, str]]:
    """(incident, sample) of every commented alert: one incident comment each."""
    return {
        (str(a["incidentId"]), str(e.get("sha256") or e.get("url")))
        for a in demo.defender.alerts
        if a["id"] in DEMO_HEADLINES
        for e in a["evidence"]
        if e.get("sha256") or e.get("url")
    }


def check_incidents(w: World) -> None:
    """Each incident: our one tag (its worst verdict) after the analysts' tags, one comment per
    sample, an analyst's comment kept; the skipped alerts' incidents untouched."""
    for incident_id, (tags, headlines, ours) in INCIDENTS.items():
        incident = w.graph_incident(incident_id)
        assert incident.custom_tags == [*tags, ours], incident_id
        assert [t for t in incident.custom_tags if is_ours(t)] == [ours]
        comments = [c.comment or "" for c in incident.comments]
        joe = [c for c in comments if MARKER_PREFIX in c]
        assert sorted(c.splitlines()[0] for c in joe) == sorted(f"Joe Sandbox: {h}" for h in headlines), joe
        assert all("Analysis: http://127.0.0.1:" in c for c in joe)
        keys = {c.splitlines()[-1].removeprefix(MARKER_PREFIX).strip() for c in joe}
        assert len(keys) == len(headlines)  # one comment per sample: no sample twice
        assert all(has_marker(comments, key) for key in keys)
        if incident_id == "502":
            assert comments[0] == _ANALYST_COMMENT
    for incident_id in UNTOUCHED:
        incident = w.graph_incident(incident_id)
        assert (incident.custom_tags, incident.comments) == ([], []), incident_id


@pytest.mark.parametrize("source", ["mde", "graph"])
def test_each_incident_of_the_demo_carries_its_worst_verdict_and_one_comment_per_sample(
    make_world: WorldFactory, source: str
) -> None:
    w = make_world(
        demo_with_a_mixed_incident(),
        JoeSandboxResubmitAfterDays="7",
        AlertSource=source,
        DefenderIncidentTags="true",
        DefenderIncidentComments="true",
    )
    with w.connector() as connector:
        assert Poller(connector.app, interval=0, lookback=timedelta(days=3650)).poll_once() == _PASSING
        drain(connector, 90)
        jobs = {job.record.key: job.record for job in connector.ctx.jobs.list()}
        history = connector.store.history("incident:503")
    check_incidents(w)
    for alert_id, headline in DEMO_HEADLINES.items():  # the alerts' comments are as without
        ours = [c for c in w.comments(alert_id) if MARKER_PREFIX in c]
        assert len(ours) == 1, (alert_id, ours)
        assert ours[0].startswith(f"Joe Sandbox: {headline}")
    # Incident 503's last verdict was not its worst: the tag was not simply the last one written.
    in_503 = [jobs[key] for key in jobs if has_marker([c.comment for c in w.graph_incident("503").comments], key)]
    last = max(in_503, key=lambda job: job.updated_at)
    assert last.verdict is not None
    assert last.verdict.detection != "malicious"
    tagged = [line.detail for line in history if line.step == "incident tag" and line.outcome == "tagged"]
    assert tagged[-1] == "JoeSandbox:malicious"
    graph_calls = w.graph("/_emulator/calls")
    assert graph_calls["incidents.comments"]["calls"] == len(_incident_samples(w.scenario))  # no more
    alerts_v2 = {route for route in graph_calls if route.startswith("alerts_v2.")}
    assert bool(alerts_v2) == (source == "graph")  # the MDE source reads no alert through Graph


@pytest.mark.parametrize(("tags", "comments"), [("true", "false"), ("false", "true")], ids=["tags", "comments"])
def test_each_setting_does_its_own_half(make_world: WorldFactory, tags: str, comments: str) -> None:
    w = make_world(
        demo_with_a_mixed_incident(),
        JoeSandboxResubmitAfterDays="7",
        DefenderIncidentTags=tags,
        DefenderIncidentComments=comments,
    )
    with w.connector() as connector:
        assert Poller(connector.app, interval=0, lookback=timedelta(days=3650)).poll_once() == _PASSING
        drain(connector, 90)
    incident = w.graph_incident("503")
    assert incident.custom_tags == (["JoeSandbox:malicious"] if tags == "true" else [])
    ours = [c for c in incident.comments if MARKER_PREFIX in (c.comment or "")]
    assert len(ours) == (3 if comments == "true" else 0)
