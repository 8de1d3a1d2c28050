"""Machines (get, list, healthStatus on the schedule) and machine actions (list, get, cancel)."""

from __future__ import annotations

import pytest

from .conftest import BUSY, CLIENT, LATER, NEVER, ONLINE, command, mde_scenario_raw


def _health(mde, machine_id: str) -> str:
    response = mde.get(f"/api/machines/{machine_id}")
    assert response.status_code == 200, response.text
    status = response.json()["healthStatus"]
    assert isinstance(status, str)
    return status


def test_get_machine_by_id_or_computer_name(mde):
    by_id = mde.get(f"/api/machines/{ONLINE}").json()
    by_name = mde.get("/api/machines/DESK-01.contoso.local").json()
    assert by_id == by_name
    assert by_id["id"] == ONLINE
    assert by_id["computerDnsName"] == "desk-01.contoso.local"
    assert by_id["osPlatform"] == "Windows11"
    assert by_id["rbacGroupName"] == "Workstations"  # scenario extras are served as given
    assert by_id["machineTags"] == ["finance"]
    missing = mde.get("/api/machines/" + "e" * 40)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "ResourceNotFound"


def test_health_status_follows_the_online_schedule(mde):
    assert _health(mde, ONLINE) == "Active"
    assert _health(mde, LATER) == "Inactive"
    assert _health(mde, NEVER) == "Inactive"
    mde.advance(3600)
    assert _health(mde, LATER) == "Active"
    assert _health(mde, NEVER) == "Inactive"


def test_list_machines_with_filter_top_skip(mde):
    everything = mde.get("/api/machines").json()["value"]
    assert [m["id"] for m in everything] == [ONLINE, LATER, BUSY, NEVER]
    active = mde.get("/api/machines", params={"$filter": "healthStatus eq 'Active'"}).json()["value"]
    assert [m["id"] for m in active] == [ONLINE, BUSY]
    named = mde.get("/api/machines", params={"$filter": "computerDnsName eq 'laptop-02.contoso.local'"})
    assert [m["id"] for m in named.json()["value"]] == [LATER]
    page = mde.get("/api/machines", params={"$top": 2, "$skip": 1}).json()["value"]
    assert [m["id"] for m in page] == [LATER, BUSY]
    assert mde.get("/api/machines", params={"$top": 10001}).status_code == 400


def test_list_machines_is_404_when_the_tenant_has_none(make_mde):
    raw = mde_scenario_raw()
    raw["defender"]["machines"] = []
    raw["defender"]["alerts"] = []
    response = make_mde(raw).get("/api/machines")
    assert response.status_code == 404


def test_machine_actions_filter_get_and_cancel(mde):
    created = mde.run_live_response(ONLINE, [command("GetFile", Path="C:\\Users\\alice\\Downloads\\evil.exe")])
    assert created.status_code == 201
    action_id = created.json()["id"]
    mde.advance(1)  # the clock moves only when told: the second action is a second younger
    queued = mde.run_live_response(LATER, [command("GetFile", Path="D:\\data\\other.dll")]).json()["id"]

    def listed(filter_: str) -> list[str]:
        response = mde.get("/api/machineactions", params={"$filter": filter_})
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["value"]]

    assert listed(f"machineId eq '{ONLINE}'") == [action_id]
    assert listed(f"machineId eq '{ONLINE}' and status eq 'Pending'") == [action_id]
    assert listed(f"requestor eq '{CLIENT}'") == [action_id, queued]
    assert listed(f"id eq '{queued}'") == [queued]
    # The busy machine's session is a portal one: not listed (mde-api.md section 3).
    assert listed("type eq 'LiveResponse' and status eq 'InProgress'") == []
    assert len(mde.get("/api/machineactions", params={"$top": 1}).json()["value"]) == 1
    assert mde.get("/api/machineactions", params={"$filter": "colour eq 'x'"}).status_code == 400

    action = mde.action(action_id)
    assert action["status"] == "Pending"
    assert action["lastUpdateDateTimeUtc"] == action["lastUpdateTimeUtc"]

    cancelled = mde.post(f"/api/machineactions/{action_id}/cancel", json={"Comment": "no longer needed"})
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert body["status"] == "Cancelled"
    assert body["cancellationComment"] == "no longer needed"
    assert body["cancellationRequestor"] == CLIENT
    assert body["cancellationDateTimeUtc"] is not None
    assert body["commands"][0]["commandStatus"] == "Created"
    # Final now: it stays cancelled, cannot be cancelled again, and frees the machine.
    mde.advance(3600)
    assert mde.action(action_id)["status"] == "Cancelled"
    again = mde.post(f"/api/machineactions/{action_id}/cancel", json={"Comment": "again"})
    assert again.status_code == 400
    assert "Cancelled" in again.json()["error"]["message"]
    assert mde.run_live_response(ONLINE, [command("GetFile", Path="C:\\x")]).status_code == 201


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "MissingRequiredParameter"),
        ({"comment": "x"}, "InvalidRequestBody"),
        ({"Comment": 3}, "InvalidRequestBody"),
    ],
)
def test_cancel_validates_its_body(mde, body, code):
    action_id = mde.run_live_response(ONLINE, [command("GetFile", Path="C:\\x")]).json()["id"]
    response = mde.post(f"/api/machineactions/{action_id}/cancel", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert mde.action(action_id)["status"] == "Pending"


def test_unknown_machine_action_is_404(mde):
    for response in (
        mde.get("/api/machineactions/00000000-0000-0000-0000-000000000000"),
        mde.post("/api/machineactions/00000000-0000-0000-0000-000000000000/cancel", json={"Comment": "x"}),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "ResourceNotFound"
