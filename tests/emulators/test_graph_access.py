"""The Graph emulator's guards over real sockets: the token audience (one app registration, two
APIs), the application permissions with Graph's 403, the 150-a-minute throttle, faults before
and after the handler, incidents, and the inspection surface."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from .graph_fixtures import (
    GRAPH_SCOPE,
    MDE_SCOPE,
    graph_alert,
    graph_scenario,
)

ALERT_1 = graph_alert(1)["id"]


def _roles(token: str) -> set[str]:
    payload = token.split(".")[1]
    return set(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["roles"])


def _add_fault(graph: Any, **rule: Any) -> None:
    graph.http.post(f"{graph.url}/_emulator/faults", json=rule).raise_for_status()


def test_each_api_takes_only_tokens_of_its_own_audience(graph):
    mde_token, graph_token = graph.token(MDE_SCOPE), graph.token(GRAPH_SCOPE)
    assert "SecurityAlert.ReadWrite.All" in _roles(graph_token)
    assert "Alert.ReadWrite.All" not in _roles(graph_token)
    assert "Alert.ReadWrite.All" in _roles(mde_token)
    assert "SecurityAlert.ReadWrite.All" not in _roles(mde_token)
    wrong = graph.call("GET", "/alerts_v2", scope=MDE_SCOPE)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "Bearer" in wrong.headers["WWW-Authenticate"]
    assert graph.http.get(f"{graph.url}/v1.0/security/alerts_v2").status_code == 401  # no token at all
    assert graph.mde("GET", "/api/alerts", headers={"Authorization": f"Bearer {graph_token}"}).status_code == 401
    assert graph.get("/alerts_v2").status_code == 200


def test_missing_permissions_get_graphs_403_and_change_nothing(make_graph):
    harness = make_graph(graph_scenario(permissions=["SecurityAlert.Read.All"]))
    assert harness.get("/alerts_v2").status_code == 200
    for method, path, body in (
        ("POST", f"/alerts_v2/{ALERT_1}/comments", {"comment": "x"}),
        ("PATCH", f"/alerts_v2/{ALERT_1}", {"status": "resolved"}),
        ("GET", "/incidents/71", None),
        ("PATCH", "/incidents/71", {"customTags": []}),
    ):
        refused = harness.call(method, path, json=body)
        assert refused.status_code == 403, path
        error = refused.json()["error"]
        assert error["code"] == "Forbidden"
        assert error["message"] == "Auth token does not contain valid permissions or user does not have valid roles"
    assert harness.get(f"/alerts_v2/{ALERT_1}").json()["comments"] == []


def test_150_requests_a_minute_then_429_with_retry_after_and_graphs_body(graph):
    statuses = [graph.get("/incidents/71" if n % 2 else "/alerts_v2").status_code for n in range(151)]
    assert statuses == [200] * 150 + [429]  # alerts and incidents share the budget
    throttled = graph.get("/alerts_v2")
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    error = throttled.json()["error"]
    assert (error["code"], error["message"]) == ("TooManyRequests", "Please retry again later.")
    assert error["innerError"]["status"] == "429"
    graph.emulators.clock.advance(60)
    assert graph.get("/alerts_v2").status_code == 200
    assert graph.inspect("calls")["alerts_v2.list"]["throttled"] == 2


def test_a_fault_after_the_handler_applies_the_comment_and_loses_the_answer(graph):
    _add_fault(graph, method="POST", path="/comments$", drop=True, after=True, times=1)
    try:
        graph.call("POST", f"/alerts_v2/{ALERT_1}/comments", json={"comment": "applied, answer lost"})
        raise AssertionError("the answer should have been lost")
    except httpx.TransportError:
        pass
    assert [c["comment"] for c in graph.get(f"/alerts_v2/{ALERT_1}").json()["comments"]] == ["applied, answer lost"]
    _add_fault(graph, method="POST", path="/comments$", status=503, times=1)
    assert graph.call("POST", f"/alerts_v2/{ALERT_1}/comments", json={"comment": "refused"}).status_code == 503
    assert len(graph.get(f"/alerts_v2/{ALERT_1}").json()["comments"]) == 1
    faults = graph.inspect("faults")
    assert [f["fired"] for f in faults] == [1, 1]
    comments = graph.http.get(f"{graph.url}/_emulator/timeline", params={"route": "alerts_v2.comments"}).json()
    assert [e["status"] for e in comments] == [None, 503]  # the dropped answer, then the refusal


def test_incidents_keep_tags_and_comments_and_patch_replaces_the_tags(graph):
    incident = graph.get("/incidents/71").json()
    assert incident["customTags"] == ["VIP", "Finance"]
    assert [c["comment"] for c in incident["comments"]] == ["looking"]
    answer = graph.call("POST", "/incidents/71/comments", json={"comment": "Joe Sandbox: MALICIOUS"})
    assert answer.status_code == 200
    assert [c["comment"] for c in answer.json()["value"]] == ["looking", "Joe Sandbox: MALICIOUS"]
    patched = graph.call("PATCH", "/incidents/71", json={"customTags": ["JoeSandbox:malicious"]})
    assert patched.status_code == 200
    assert patched.json()["customTags"] == ["JoeSandbox:malicious"]  # replaced, not merged
    assert graph.get("/incidents/71").json()["customTags"] == ["JoeSandbox:malicious"]
    bad_updates: list[dict[str, Any]] = [{"customTags": "x"}, {"customTags": [""]}, {"comments": []}, {"status": "x"}]
    for bad in bad_updates:
        assert graph.call("PATCH", "/incidents/71", json=bad).status_code == 400, bad
    assert graph.get("/incidents/9999").status_code == 404
    expanded = graph.get("/incidents/71", params={"$expand": "alerts"}).json()
    assert [a["id"] for a in expanded["alerts"]] == [ALERT_1]
    # an incident an alert names but the scenario does not list exists, without tags
    assert graph.get("/incidents/72").json()["customTags"] == []


def test_the_inspection_surface_shows_alerts_and_incidents(graph):
    alerts = graph.inspect("alerts")["value"]
    listed = {a["id"]: a["_listed"] for a in alerts}
    assert listed[ALERT_1] is True
    assert listed[graph_alert(3)["id"]] is False
    incidents = {i["id"]: i for i in graph.inspect("incidents")["value"]}
    assert incidents["71"]["customTags"] == ["VIP", "Finance"]
    graph.get("/alerts_v2")
    assert graph.inspect("calls")["alerts_v2.list"]["calls"] == 1
    assert graph.inspect("clock")["timeScale"] == 1.0
