"""GET /api/alerts with OData options, GET/PATCH one alert, and batchUpdate (mde-api.md section 2)."""

from __future__ import annotations

from datetime import datetime

import pytest

from .conftest import CLIENT

FIRST, SECOND, THIRD, ZEROTH = (
    "da637000000000000001_1",
    "da637000000000000002_2",
    "da637000000000000003_3",
    "da637000000000000000_0",
)


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [alert["id"] for alert in response.json()["value"]]


def test_list_is_ordered_by_last_update_then_id_without_evidence(mde):
    response = mde.get("/api/alerts")
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#Alerts")
    assert _ids(response) == [ZEROTH, FIRST, SECOND, THIRD]
    assert all(alert["evidence"] == [] for alert in body["value"])


def test_expand_evidence_fills_every_documented_key(mde):
    alerts = {a["id"]: a for a in mde.get("/api/alerts", params={"$expand": "evidence"}).json()["value"]}
    evidence = alerts[FIRST]["evidence"]
    assert len(evidence) == 1
    item = evidence[0]
    sample = mde.emulator.scenario.samples["evil"]
    assert item["sha256"] == sample.sha256
    assert item["sha1"] == sample.sha1
    assert item["fileName"] == "evil.exe"
    assert item["processId"] is None
    assert item["detectionStatus"] is None
    assert "$sample" not in item
    assert alerts[SECOND]["evidence"][0]["url"] == "http://phish.example/login"


def test_alerts_are_served_as_given_with_missing_documented_keys_null(mde):
    alert = mde.get(f"/api/alerts/{FIRST}").json()
    assert alert["vendorSpecificField"] == {"kept": True}
    assert alert["alertCreationTime"] == "2024-05-01T10:00:00.1234567Z"
    assert alert["incidentId"] == 7
    assert alert["assignedTo"] is None
    assert alert["threatFamilyName"] is None
    assert alert["comments"] == []
    assert alert["mitreTechniques"] == []
    assert len(alert["evidence"]) == 1  # a single alert carries its evidence


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ("lastUpdateTime ge 2024-05-02T11:00:00Z", [SECOND, THIRD]),
        ("lastUpdateTime gt 2024-05-02T11:00:00Z", [THIRD]),
        ("lastUpdateTime lt 2024-05-02T11:00:00Z", [ZEROTH, FIRST]),
        ("lastUpdateTime le 2024-05-02T11:00:00.0000000Z", [ZEROTH, FIRST, SECOND]),
        ("alertCreationTime ge 2024-05-01T09:30:00+00:00", [FIRST, SECOND, THIRD]),
        ("status eq 'New'", [ZEROTH, FIRST]),
        ("severity eq 'High' or severity eq 'Low'", [FIRST, THIRD]),
        ("detectionSource eq 'WindowsDefenderAv' and status eq 'New'", [ZEROTH, FIRST]),
        (
            "lastUpdateTime ge 2024-05-01T00:00:00Z and lastUpdateTime lt 2024-05-03T00:00:00Z "
            "and (status eq 'New' or status eq 'InProgress')",
            [ZEROTH, FIRST, SECOND],
        ),
        (f"id eq '{THIRD}'", [THIRD]),
        ("incidentId eq 7", [FIRST]),
        ("assignedTo eq null", [ZEROTH, FIRST, SECOND, THIRD]),
        ("status ne 'Resolved'", [ZEROTH, FIRST, SECOND]),
    ],
)
def test_filter(mde, filter_, expected):
    assert _ids(mde.get("/api/alerts", params={"$filter": filter_})) == expected


def test_filter_with_plus_signs_as_in_the_docs(mde):
    response = mde.get("/api/alerts?$filter=lastUpdateTime+ge+2024-05-02T00:00:00Z&$top=1")
    assert _ids(response) == [SECOND]


def test_top_and_skip_page_through_a_stable_order(mde):
    pages = [_ids(mde.get("/api/alerts", params={"$top": 2, "$skip": skip})) for skip in (0, 2, 4)]
    assert pages == [[ZEROTH, FIRST], [SECOND, THIRD], []]
    assert _ids(mde.get("/api/alerts", params={"$top": 10000})) == [ZEROTH, FIRST, SECOND, THIRD]


@pytest.mark.parametrize(
    "params",
    [
        {"$top": "10001"},
        {"$top": "-1"},
        {"$top": "ten"},
        {"$skip": "1.5"},
        {"$filter": "lastUpdateTime ge '2024-05-01T00:00:00Z'"},  # quoted datetime
        {"$filter": "status eq New"},  # unquoted string
        {"$filter": "status eq 'New' and"},
        {"$filter": "(status eq 'New'"},
        {"$filter": "status eqq 'New'"},
        {"$filter": "colour eq 'red'"},
        {"$filter": "status gt 'New'"},
        {"$filter": "lastUpdateTime ge 2024-13-45T00:00:00Z"},
        {"$filter": "lastUpdateTime ge 2024-05-01T00:00:00"},
        {"$filter": "contains(title, 'x')"},
        {"$filter": ""},
        {"$filter": "'; DROP TABLE alerts; --"},
        {"$expand": "machine"},
        {"$orderby": "severity"},
    ],
)
def test_malformed_odata_is_400_odata_error(mde, params):
    response = mde.get("/api/alerts", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ODataError"


def test_get_unknown_alert_is_404(mde):
    response = mde.get("/api/alerts/da6370000_missing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ResourceNotFound"


def test_patch_updates_fields_appends_comment_and_returns_the_whole_alert(mde):
    before = mde.get(f"/api/alerts/{FIRST}").json()
    body = {
        "status": "Resolved",
        "assignedTo": "secop2@contoso.com",
        "classification": "TruePositive",
        "determination": "Malware",
        "comment": "Joe Sandbox: malicious (score 96)",
    }
    response = mde.call("PATCH", f"/api/alerts/{FIRST}", json=body)
    assert response.status_code == 200
    alert = response.json()
    assert alert["id"] == FIRST
    assert alert["vendorSpecificField"] == {"kept": True}
    assert len(alert["evidence"]) == 1
    for key in ("status", "assignedTo", "classification", "determination"):
        assert alert[key] == body[key]
    assert alert["resolvedTime"] is not None
    [comment] = alert["comments"]
    assert comment["comment"] == body["comment"]
    assert comment["createdBy"] == CLIENT
    assert comment["createdTime"] == alert["lastUpdateTime"]
    assert datetime.fromisoformat(alert["lastUpdateTime"]) > datetime.fromisoformat(before["lastUpdateTime"])
    # A second comment alone keeps the rest; the list only grows.
    again = mde.call("PATCH", f"/api/alerts/{FIRST}", json={"comment": "second"}).json()
    assert [c["comment"] for c in again["comments"]] == [body["comment"], "second"]
    assert again["status"] == "Resolved"
    # The updated alert now sorts last and is what the inspection surface shows.
    assert _ids(mde.get("/api/alerts"))[-1] == FIRST
    stored = {a["id"]: a for a in mde.inspect("alerts")["value"]}[FIRST]
    assert [c["comment"] for c in stored["comments"]] == [body["comment"], "second"]


@pytest.mark.parametrize(
    "body",
    [
        {"status": "Closed"},
        {"status": "resolved"},
        {"classification": "Bad"},
        {"determination": "Evil"},
        {"Status": "Resolved"},  # property names are case-sensitive
        {"comments": "x"},
        {"comment": 5},
        {"assignedTo": ["a"]},
        [],
        "text",
    ],
)
def test_patch_rejects_bad_bodies_without_changing_anything(mde, body):
    response = mde.call("PATCH", f"/api/alerts/{FIRST}", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequestBody"
    stored = {a["id"]: a for a in mde.inspect("alerts")["value"]}[FIRST]
    assert stored["status"] == "New"
    assert stored["comments"] == []


def test_patch_with_malformed_json_is_400(mde):
    response = mde.call(
        "PATCH", f"/api/alerts/{FIRST}", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequestBody"


def test_patch_unknown_alert_is_404(mde):
    response = mde.call("PATCH", "/api/alerts/nope", json={"comment": "x"})
    assert response.status_code == 404


def test_batch_update(mde):
    response = mde.post(
        "/api/alerts/batchUpdate", json={"alertIds": [FIRST, SECOND], "status": "InProgress", "comment": "batch"}
    )
    assert response.status_code == 200
    assert response.content == b""
    stored = {a["id"]: a for a in mde.inspect("alerts")["value"]}
    for alert_id in (FIRST, SECOND):
        assert stored[alert_id]["status"] == "InProgress"
        assert [c["comment"] for c in stored[alert_id]["comments"]] == ["batch"]
    assert stored[THIRD]["comments"] == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"status": "Resolved"}, 400, "MissingRequiredParameter"),
        ({"AlertIds": [FIRST], "status": "Resolved"}, 400, "InvalidRequestBody"),
        ({"alertIds": [], "status": "Resolved"}, 400, "InvalidRequestBody"),
        ({"alertIds": FIRST, "status": "Resolved"}, 400, "InvalidRequestBody"),
        ({"alertIds": [FIRST], "status": "Gone"}, 400, "InvalidRequestBody"),
        ({"alertIds": [FIRST, "missing"], "status": "Resolved"}, 404, "ResourceNotFound"),
    ],
)
def test_batch_update_errors_change_nothing(mde, body, status, code):
    response = mde.post("/api/alerts/batchUpdate", json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    stored = {a["id"]: a for a in mde.inspect("alerts")["value"]}
    assert stored[FIRST]["status"] == "New"


def test_versioned_path_and_case_insensitive_routes(mde):
    assert _ids(mde.get("/api/v1.0/alerts", params={"$top": 1})) == [ZEROTH]
    response = mde.post("/api/alerts/BATCHUPDATE", json={"alertIds": [THIRD], "comment": "x"})
    assert response.status_code == 200
