"""The Graph emulator's alerts_v2 over real TLS sockets: the alerts of the MDE tenant in Graph's
shape, its documented filters and paging (with and without @odata.nextLink), comments through
Graph landing in the same store as the MDE API's, and the alert update."""

from __future__ import annotations

from typing import Any

from joedefender_emulators.scenario import parse_scenario

from .graph_fixtures import (
    DESK,
    LAPTOP,
    MDE,
    GraphHarness,
    graph_alert,
    graph_scenario,
)

ALERT_1 = graph_alert(1)["id"]
ALERT_2 = graph_alert(2)["id"]


def _listed(graph: GraphHarness, **params: str) -> list[dict[str, Any]]:
    response = graph.get("/alerts_v2", params=params)
    assert response.status_code == 200, response.text
    values: list[dict[str, Any]] = response.json()["value"]
    return values


def _by_type(alert: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in alert["evidence"] if e["@odata.type"] == f"#microsoft.graph.security.{kind}"]


def test_alerts_are_the_mde_tenants_in_graphs_shape(graph):
    scenario = parse_scenario(graph_scenario())
    evil, loader = scenario.samples["evil"], scenario.samples["loader"]
    alert = next(a for a in _listed(graph) if a["id"] == ALERT_1)
    assert alert["providerAlertId"] == ALERT_1
    assert (alert["incidentId"], alert["status"], alert["severity"]) == ("71", "new", "high")
    assert (alert["serviceSource"], alert["detectionSource"]) == (MDE, "antivirus")
    assert alert["classification"] == alert["determination"] == "unknown"
    assert alert["threatDisplayName"] == "Trojan:Win32/Emotet!ml"
    [device] = _by_type(alert, "deviceEvidence")
    assert (device["mdeDeviceId"], device["deviceDnsName"], device["osPlatform"]) == (
        DESK,
        "desk-01.contoso.local",
        "Windows11",
    )
    [file] = _by_type(alert, "fileEvidence")
    assert file["fileDetails"]["sha256"] == evil.sha256
    assert file["fileDetails"]["sha1"] == evil.sha1
    assert (file["fileDetails"]["fileName"], file["fileDetails"]["filePath"]) == (
        "evil.exe",
        "C:\\Users\\alice\\Downloads",
    )
    assert (file["mdeDeviceId"], file["detectionStatus"]) == (DESK, "prevented")
    [process] = _by_type(alert, "processEvidence")
    assert process["imageFile"]["sha256"] == loader.sha256
    assert (process["imageFile"]["fileName"], process["imageFile"]["filePath"]) == ("loader.exe", "C:\\Temp")
    assert process["parentProcessImageFile"] == {**process["parentProcessImageFile"], "fileName": "explorer.exe",
                                                 "sha256": None}  # fmt: skip
    assert (process["processId"], process["mdeDeviceId"]) == (4780, DESK)
    assert [e["url"] for e in _by_type(alert, "urlEvidence")] == ["http://phish.example/login"]
    assert _by_type(alert, "userEvidence")[0]["userAccount"]["accountName"] == "alice"


def test_standalone_and_tuned_alerts_are_not_listed_and_other_products_only_in_graph(graph):
    listed = {a["id"] for a in _listed(graph)}
    assert listed == {graph_alert(n)["id"] for n in (1, 2, 5)}
    for hidden in (3, 4):
        assert graph.get(f"/alerts_v2/{graph_alert(hidden)['id']}").status_code == 404
        assert graph.mde("GET", f"/api/alerts/{graph_alert(hidden)['id']}").status_code == 200
    office = graph_alert(5)["id"]
    assert graph.mde("GET", f"/api/alerts/{office}").status_code == 404  # not an MDE alert
    in_mde = {a["id"] for a in graph.mde("GET", "/api/alerts").json()["value"]}
    assert office not in in_mde
    assert ALERT_1 in in_mde
    mail = graph.get(f"/alerts_v2/{office}").json()
    assert (mail["serviceSource"], _by_type(mail, "urlEvidence")[0]["url"]) == (
        "microsoftDefenderForOffice365",
        "http://mail.example/x",
    )


def test_filters_on_last_update_and_service_source_work(graph):
    window = "lastUpdateDateTime ge 2024-05-01T10:11:00Z and lastUpdateDateTime lt 2024-05-01T10:15:00Z"
    assert {a["id"] for a in _listed(graph, **{"$filter": window})} == {ALERT_1, ALERT_2}
    only_mde = _listed(graph, **{"$filter": f"serviceSource eq '{MDE}'"})
    assert {a["id"] for a in only_mde} == {ALERT_1, ALERT_2}
    newest_first = _listed(graph)
    assert [a["id"] for a in newest_first] == [graph_alert(n)["id"] for n in (5, 2, 1)]


def test_detection_source_and_undocumented_options_are_refused(graph):
    refused = graph.get("/alerts_v2", params={"$filter": "detectionSource eq 'antivirus'"})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "BadRequest"
    assert "detectionSource" in error["message"]
    assert error["innerError"]["request-id"]
    assert graph.get("/alerts_v2", params={"$orderby": "createdDateTime"}).status_code == 400
    assert graph.get("/alerts_v2", params={"$top": "x"}).status_code == 400


def test_paging_follows_next_links_to_the_end(make_graph):
    harness = make_graph(graph_scenario([graph_alert(n) for n in range(1, 8)]))
    response = harness.get("/alerts_v2", params={"$top": "3", "$count": "true"})
    body = response.json()
    assert body["@odata.count"] == 7
    seen = [a["id"] for a in body["value"]]
    while "@odata.nextLink" in body:
        body = harness.get(body["@odata.nextLink"]).json()
        seen += [a["id"] for a in body["value"]]
    assert seen == [graph_alert(n)["id"] for n in range(7, 0, -1)]
    tampered = harness.get("/alerts_v2", params={"$skiptoken": "not-a-token"})
    assert tampered.status_code == 400


def test_without_next_links_skip_pages_and_count_tells_how_many(make_graph):
    harness = make_graph(graph_scenario([graph_alert(n) for n in range(1, 8)], next_link=False, max_top=2))
    first = harness.get("/alerts_v2", params={"$top": "5", "$count": "true"}).json()
    assert "@odata.nextLink" not in first
    assert len(first["value"]) == 2  # $top above the largest is shortened, silently
    assert first["@odata.count"] == 7
    rest = harness.get("/alerts_v2", params={"$top": "5", "$skip": "2"}).json()["value"]
    assert [a["id"] for a in rest] == [graph_alert(n)["id"] for n in (5, 4)]


def test_a_comment_through_graph_returns_the_list_and_is_the_mde_apis_comment(graph):
    graph.mde("PATCH", f"/api/alerts/{ALERT_1}", json={"comment": "first, through MDE"})
    text = "Joe Sandbox: MALICIOUS\r\n<b>&'\"\u202e\nlast line"
    answer = graph.call(
        "POST",
        f"/alerts_v2/{ALERT_1}/comments",
        json={"@odata.type": "microsoft.graph.security.alertComment", "comment": text},
    )
    assert answer.status_code == 200, answer.text
    comments = answer.json()["value"]
    assert [c["comment"] for c in comments] == ["first, through MDE", text]
    assert all(c["createdByDisplayName"] and c["createdDateTime"] for c in comments)
    assert [c["comment"] for c in graph.get(f"/alerts_v2/{ALERT_1}").json()["comments"]] == [
        "first, through MDE",
        text,
    ]
    mde = graph.mde("GET", f"/api/alerts/{ALERT_1}").json()
    assert [c["comment"] for c in mde["comments"]] == ["first, through MDE", text]


def test_bad_comment_bodies_are_refused_and_nothing_is_stored(graph):
    for body in (
        {},
        {"comment": ""},
        {"comment": 5},
        {"comment": "x", "extra": 1},
        {"@odata.type": "x", "comment": "y"},
    ):
        response = graph.call("POST", f"/alerts_v2/{ALERT_1}/comments", json=body)
        assert response.status_code == 400, body
    assert graph.get(f"/alerts_v2/{ALERT_1}").json()["comments"] == []
    assert graph.call("POST", "/alerts_v2/unknown-id/comments", json={"comment": "x"}).status_code == 404


def test_the_alert_update_sets_the_documented_properties_and_takes_no_comment(graph):
    update = {"status": "inProgress", "classification": "truePositive", "determination": "malware", "assignedTo": "j"}
    answer = graph.call("PATCH", f"/alerts_v2/{ALERT_1}", json=update)
    assert answer.status_code == 200, answer.text
    assert {k: answer.json()[k] for k in update} == update
    mde = graph.mde("GET", f"/api/alerts/{ALERT_1}").json()
    assert (mde["status"], mde["classification"], mde["determination"], mde["assignedTo"]) == (
        "InProgress",
        "TruePositive",
        "Malware",
        "j",
    )
    refused = graph.call("PATCH", f"/alerts_v2/{ALERT_1}", json={"comment": "no such field"})
    assert refused.status_code == 400
    assert "comment" in refused.json()["error"]["message"]
    assert graph.call("PATCH", f"/alerts_v2/{ALERT_1}", json={"status": "New"}).status_code == 400


def test_mde_machines_of_the_graph_evidence_are_the_mde_apis(graph):
    alert = graph.get(f"/alerts_v2/{ALERT_2}").json()
    [device] = _by_type(alert, "deviceEvidence")
    machine = graph.mde("GET", f"/api/machines/{device['mdeDeviceId']}")
    assert machine.status_code == 200
    assert machine.json()["id"] == LAPTOP
