"""The Graph adapter when Graph misbehaves, over real sockets: 429s (Graph's 150 a minute, and
injected ones) honoured to the second on the emulator's own timeline, a comment applied whose answer
was lost (found by its marker, never written twice), revoked tokens, and errors in the core's terms."""

from __future__ import annotations

import threading

import httpx
import pytest

from joedefender.adapters.defender import RateLimiter
from joedefender.domain.comments import has_marker, marker
from joedefender.domain.errors import NotAllowed, NotFound, Transient
from tests.clients.graph_fixtures import (
    add_fault,
    alert_source,
    calls,
    graph_alert,
    graph_client_for,
    graph_comments,
    graph_scenario,
    graph_world,
    inspect,
)
from tests.clients.timeline import assert_every_retry_after_was_waited

ALERT_1 = graph_alert(1)["id"]
SAMPLE = "sha256:" + "ab" * 32


def test_a_429_storm_is_honoured_to_the_second():
    """Five threads read 40 times each through one client without a client-side limiter: the
    emulator answers 429 past Graph's 150 a minute (and twice more by injected faults, so there is
    always one to judge), and after every 429 the next read of that path reaches the emulator no
    sooner than the Retry-After it was given."""
    alerts = [graph_alert(n) for n in range(1, 6)]
    raw = {**graph_scenario(alerts), "time_scale": 0.1}  # a minute is 6 real seconds
    with graph_world(raw) as emu, graph_client_for(emu, limiter=RateLimiter({}), max_retry=4) as client:
        client.get_alert(alerts[0]["id"])  # token and connection warm
        add_fault(emu, service="graph", path=r"/alerts_v2/", status=429, retry_after=1, times=2)
        errors: list[BaseException] = []

        def burst(alert_id: str) -> None:
            try:
                for _ in range(40):
                    client.get_alert(alert_id)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=burst, args=(a["id"],)) for a in alerts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        exchanges = inspect(emu, "timeline", route="alerts_v2.get")
    assert errors == []
    statuses = [e["status"] for e in exchanges]
    assert statuses.count(200) == 201  # every read got its answer in the end
    throttled = [e for e in exchanges if e["status"] == 429]
    assert len(throttled) >= 3  # the two injected and at least one of Graph's own 150 a minute
    assert_every_retry_after_was_waited(exchanges)


def test_the_limiter_keeps_a_burst_under_graphs_150_a_minute():
    raw = {**graph_scenario(), "time_scale": 0.01}
    with graph_world(raw) as emu, graph_client_for(emu) as client:
        failures: list[BaseException] = []

        def reader() -> None:
            try:
                for _ in range(60):
                    client.get_alert(ALERT_1)
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert failures == []
        assert calls(emu, "alerts_v2.get") == 240
        assert calls(emu, "alerts_v2.get", "throttled") == 0


def test_a_comment_applied_whose_answer_is_lost_is_found_by_its_marker_and_not_written_again():
    text = f"Joe Sandbox: MALICIOUS\n{marker(SAMPLE)}"
    with graph_world() as emu, alert_source(emu) as graph:
        add_fault(emu, service="graph", method="POST", path="/comments$", drop=True, after=True, times=1)
        with pytest.raises(Transient) as caught:
            graph.add_comment(ALERT_1, text)
        assert caught.value.maybe_applied
        assert calls(emu, "alerts_v2.comments", "dropped") == 1
        assert calls(emu, "alerts_v2.comments") == 1  # not resent by the client
        [alert] = graph.get_alerts([ALERT_1])  # what write-back reads back after an uncertain outcome
        assert has_marker(alert.comments, SAMPLE)
        assert graph_comments(emu, ALERT_1) == [text]  # applied once, and once only


def test_a_5xx_after_the_comment_is_not_repeated():
    with graph_world() as emu, alert_source(emu) as graph:
        add_fault(emu, service="graph", method="POST", path="/comments$", status=503, after=True, times=1)
        with pytest.raises(Transient):
            graph.add_comment(ALERT_1, "once")
        assert calls(emu, "alerts_v2.comments") == 1
        assert graph_comments(emu, ALERT_1) == ["once"]


def test_a_revoked_graph_token_is_refreshed_once():
    with graph_world() as emu, graph_client_for(emu) as client:
        client.get_alert(ALERT_1)
        with httpx.Client(verify=emu.certificates.client_context()) as admin:
            admin.post(f"{emu.defender.url}/_emulator/tokens/revoke").raise_for_status()
        assert client.get_alert(ALERT_1).id == ALERT_1
        timeline = [e["status"] for e in inspect(emu, "timeline", route="alerts_v2.get")]
    assert timeline == [200, 401, 200]


def test_errors_are_the_cores_with_graph_as_the_service():
    raw = graph_scenario(permissions=["SecurityAlert.Read.All"])
    with graph_world(raw) as emu, alert_source(emu) as graph:
        with pytest.raises(NotAllowed) as forbidden:
            graph.add_comment(ALERT_1, "no permission")
        assert forbidden.value.service == "graph"
        assert "valid permissions" in forbidden.value.message
        with pytest.raises(NotFound):
            graph.get_alert("da000000000000000000_0")
        assert graph_comments(emu, ALERT_1) == []
