"""The demo scenario through the Functions app: HTTP trigger in, queue triggers on three
instances sharing the queues, the table and the rate budget on Azurite, the emulators with their
rate limits on. Every alert must be enriched once (one comment, one submission per sample), no
request may be answered 429, and the same must hold when one instance is killed mid-run: its
in-flight messages come back after their visibility runs out and another instance finishes them.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from joedefender.domain.comments import MARKER_PREFIX
from joedefender.hosts.azure.ports import queue_names
from joedefender_emulators.scenario import Scenario, load_scenario
from tests.azure.functions import call
from tests.azure.rig import AppInstance, start_instance, start_process, wait_for
from tests.pipeline.test_end_to_end import DEMO_HEADLINES
from tests.pipeline.test_incident_verdicts import check_incidents, demo_with_a_mixed_incident
from tests.world import World

pytestmark = pytest.mark.slow
WorldFactory = Callable[..., World]

_SCALE = 0.01
# A bound on waiting for the instances, not a claim about their speed (bench/ measures that): on a
# machine shared with other work, three instances and the emulators on two cores can take a while.
_DONE_WITHIN = 150.0
_EXPECTED = DEMO_HEADLINES  # how each alert of the demo ends, shared with the standalone's e2e
_SKIPPED = (
    "da638640000000000008_1008",
    "da638640000000000009_1009",
    "da638640000000000010_1010",
    "da638640000000000016_1016",  # operating-system processes only
)


def _ours(comments: list[str]) -> list[str]:
    return [c for c in comments if MARKER_PREFIX in c]


def _demo() -> Scenario:
    return load_scenario().model_copy(update={"time_scale": _SCALE})


def _setup(make_world: WorldFactory, azurite: Any, scenario: Scenario, **settings: str) -> tuple[World, dict[str, str]]:
    from tests.azurite import unique_prefix

    w = make_world(scenario, JoeSandboxResubmitAfterDays="7", **settings)
    environ = w.values | {
        "AzureWebJobsStorage": azurite.connection_string,
        "StoragePrefix": unique_prefix(),
        "PollerEnabled": "false",
    }
    return w, environ


@pytest.fixture
def setup(make_world: WorldFactory, azurite: Any) -> tuple[World, dict[str, str]]:
    return _setup(make_world, azurite, _demo())


def _deliver(apps: list[AppInstance], scenario: Scenario) -> None:
    """Every alert through the HTTP trigger, half as JoeAz's Logic App posts them, half bare."""
    for n, alert in enumerate(scenario.defender.alerts):
        target = apps[n % len(apps)]
        if n % 2:
            answer = target.post({"id": alert["id"], "machineId": alert.get("machineId")})
        else:
            answer = target.post({"alert": alert, "threat_name": alert.get("threatName")}, route="JoeSandboxDefender")
        assert answer.status_code == 202, answer.get_body()


def _finished(app: AppInstance) -> Callable[[], bool]:
    store = app.runtime.hosted().store
    return lambda: store.pending() == 0


def _check(w: World, app: AppInstance) -> None:
    for alert_id, headline in _EXPECTED.items():
        ours = _ours(w.comments(alert_id))
        assert len(ours) == 1, (alert_id, ours)
        assert ours[0].startswith(f"Joe Sandbox: {headline}"), ours[0]
    for skipped in _SKIPPED:
        assert _ours(w.comments(skipped)) == []
    submitted = w.submissions()
    assert len(submitted) == len({s["sha256"] or s["url"] for s in submitted}) == 8
    calls = w.defender("/_emulator/calls")
    assert sum(route["throttled"] for route in calls.values()) == 0, calls
    states = {a.record.alert_id: a.record.state for a in app.runtime.hosted().connector.ctx.alerts.list()}
    assert {states[a] for a in _EXPECTED} == {"accepted"}
    status = call(app.app, "status", _status_request(next(iter(_EXPECTED))))
    assert status.status_code == 200
    assert "commented" in status.get_body().decode()


def _status_request(alert_id: str) -> Any:
    import azure.functions as func

    return func.HttpRequest(method="GET", url="/api/status", body=b"", route_params={"alert_id": alert_id})


@pytest.mark.timeout(400)
def test_three_instances_on_the_same_queues_enrich_every_alert_once(setup: tuple[World, dict[str, str]]) -> None:
    w, environ = setup
    apps = [start_instance(environ, time_scale=_SCALE, name=f"i{n}") for n in range(3)]
    try:
        assert {tuple(sorted(queue_names(environ["StoragePrefix"]).values()))} == {
            tuple(sorted(a.runtime.hosted().store.queue_names().values())) for a in apps
        }
        _deliver(apps, w.scenario)
        try:
            wait_for(_finished(apps[0]), _DONE_WITHIN, "the queue draining")
        except AssertionError:
            store = apps[0].runtime.hosted().store
            raise AssertionError(
                f"left: {[(i.key, i.due_at - time.time(), i.owner) for i in store.items()]}; "
                f"counts: {[a.host.counts for a in apps]}"
            ) from None
        _check(w, apps[0])
        assert all(a.host.counts.succeeded > 0 for a in apps), [a.host.counts for a in apps]
        assert sum(a.host.counts.poisoned for a in apps) == 0
    finally:
        for a in apps:
            a.stop()


@pytest.mark.timeout(400)
def test_one_instance_killed_mid_run_loses_nothing_and_duplicates_nothing(
    setup: tuple[World, dict[str, str]],
) -> None:
    w, environ = setup
    victim = start_process(environ, time_scale=_SCALE, name="victim")
    apps: list[AppInstance] = []
    try:
        apps = [start_instance(environ, time_scale=_SCALE, name=f"i{n}") for n in range(2)]
        _deliver(apps, w.scenario)
        store = apps[0].runtime.hosted().store

        def victim_mid_step() -> bool:
            now = time.time()
            return any(i.owner.startswith("victim-") and i.lease_until > now for i in store.items())

        wait_for(victim_mid_step, _DONE_WITHIN, "the victim instance taking a step")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        wait_for(_finished(apps[0]), _DONE_WITHIN, "the queue draining after the kill")
        _check(w, apps[0])
    finally:
        if victim.poll() is None:
            victim.kill()
        for a in apps:
            a.stop()


@pytest.mark.timeout(400)
def test_the_functions_app_honours_the_graph_source_and_verdicts_on_incidents(
    make_world: WorldFactory, azurite: Any
) -> None:
    """The app settings the templates pass (AlertSource, DefenderIncidentTags/Comments) reach the
    Functions app: two instances read and comment the alerts through Graph, and tag and comment
    the incidents, within Graph's budget shared on the table (no 429), each write once."""
    scenario = demo_with_a_mixed_incident(_SCALE)
    w, environ = _setup(
        make_world, azurite, scenario, AlertSource="graph", DefenderIncidentTags="true", DefenderIncidentComments="true"
    )
    apps = [start_instance(environ, time_scale=_SCALE, name=f"g{n}") for n in range(2)]
    try:
        _deliver(apps, scenario)
        wait_for(_finished(apps[0]), _DONE_WITHIN, "the queue draining")
        for alert_id, headline in _EXPECTED.items():
            ours = _ours([c.comment or "" for c in w.graph_alert(alert_id).comments])
            assert len(ours) == 1, (alert_id, ours)
            assert ours[0].startswith(f"Joe Sandbox: {headline}"), ours[0]
        check_incidents(w)
        graph_calls = w.graph("/_emulator/calls")
        assert sum(route["throttled"] for route in graph_calls.values()) == 0, graph_calls
        assert not {route for route in w.defender("/_emulator/calls") if route.startswith("alerts.")}
        assert sum(a.host.counts.poisoned for a in apps) == 0
    finally:
        for a in apps:
            a.stop()
