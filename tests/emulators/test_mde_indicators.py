"""Custom indicators: submit or update, import, list with $filter, visibility, expiry, delete."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from .conftest import CLIENT, mde_scenario_raw

SHA256 = "a" * 64


def _indicator(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "indicatorValue": SHA256,
        "indicatorType": "FileSha256",
        "action": "AlertAndBlock",
        "title": "Joe Sandbox: malicious",
        "description": "Analysis 123",
        "severity": "High",
        "generateAlert": True,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def _values(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [i["indicatorValue"] for i in response.json()["value"]]


def test_submit_creates_then_updates_by_value_and_type(mde):
    created = mde.post("/api/indicators", json=_indicator(application="JoeDefender"))
    assert created.status_code == 200, created.text
    first = created.json()
    assert first["indicatorValue"] == SHA256
    assert first["createdBy"] == CLIENT
    assert first["sourceType"] == "AadApp"
    assert first["application"] == "JoeDefender"
    assert first["id"].isdigit()
    updated = mde.post(
        "/api/indicators", json=_indicator(indicatorValue=SHA256.upper(), action="Audit", application="X")
    )
    assert updated.status_code == 200
    second = updated.json()
    assert second["id"] == first["id"]
    assert second["action"] == "Audit"
    assert second["application"] == "JoeDefender"  # only honoured on create
    assert _values(mde.get("/api/indicators")) == [SHA256]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"title": None}, "MissingRequiredParameter"),
        ({"indicatorValue": None}, "MissingRequiredParameter"),
        ({"IndicatorValue": SHA256, "indicatorValue": None}, "InvalidRequestBody"),
        ({"indicatorValue": "xyz"}, "InvalidHashValue"),
        ({"indicatorType": "FileSha1"}, "InvalidHashValue"),
        ({"indicatorType": "FileMd5", "indicatorValue": "a" * 31}, "InvalidHashValue"),
        ({"indicatorType": "IpAddress", "indicatorValue": "10.0.0.0/8"}, "InvalidIpAddress"),
        ({"indicatorType": "IpAddress", "indicatorValue": "300.1.1.1"}, "InvalidIpAddress"),
        ({"indicatorType": "DomainName", "indicatorValue": "not a domain"}, "InvalidDomainName"),
        ({"indicatorType": "DomainName", "indicatorValue": "-bad-.example"}, "InvalidDomainName"),
        ({"indicatorType": "Url", "indicatorValue": "ftp://x.example/a"}, "InvalidUrl"),
        ({"indicatorType": "Url", "indicatorValue": "http:// spaced.example"}, "InvalidUrl"),
        ({"indicatorType": "Registry"}, "InvalidRequestBody"),
        ({"action": "Nuke"}, "InvalidRequestBody"),
        ({"severity": "Critical"}, "InvalidRequestBody"),
        ({"action": "Audit", "generateAlert": False}, "InvalidRequestBody"),
        ({"generateAlert": "yes"}, "InvalidRequestBody"),
        ({"expirationTime": "tomorrow"}, "InvalidRequestBody"),
        ({"expirationTime": "2001-01-01T00:00:00Z"}, "InvalidRequestBody"),
    ],
)
def test_submit_validation(mde, overrides, code):
    response = mde.post("/api/indicators", json=_indicator(**overrides))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert mde.inspect("indicators")["value"] == []


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("IpAddress", "203.0.113.7"),
        ("IpAddress", "2001:db8::1"),
        ("DomainName", "c2.evil.example"),
        ("Url", "http://c2.evil.example/gate.php"),
        ("Url", "c2.evil.example/gate.php"),
        ("FileSha1", "b" * 40),
        ("FileMd5", "C" * 32),
        ("CertificateThumbprint", "d" * 40),
    ],
)
def test_valid_values_of_every_type(mde, kind, value):
    response = mde.post("/api/indicators", json=_indicator(indicatorType=kind, indicatorValue=value))
    assert response.status_code == 200, response.text


def test_import_gives_per_item_results(mde):
    batch = [
        _indicator(),
        _indicator(indicatorType="IpAddress", indicatorValue="10.0.0.0/8"),
        _indicator(indicatorType="DomainName", indicatorValue="c2.evil.example"),
    ]
    response = mde.post("/api/indicators/import", json={"Indicators": batch})
    assert response.status_code == 200
    results = response.json()["value"]
    assert [r["isFailed"] for r in results] == [False, True, False]
    assert results[0]["indicator"] == SHA256
    assert results[0]["id"].isdigit()
    assert results[0]["failureReason"] is None
    assert "InvalidIpAddress" in results[1]["failureReason"]
    assert _values(mde.get("/api/indicators")) == [SHA256, "c2.evil.example"]


def test_import_limits(mde):
    too_many = [_indicator(indicatorValue=f"{i:064x}") for i in range(501)]
    response = mde.post("/api/indicators/import", json={"Indicators": too_many})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MaximumBatchSizeExceeded"
    assert mde.inspect("indicators")["value"] == []
    assert mde.post("/api/indicators/import", json={"indicators": [_indicator()]}).status_code == 400
    ok = mde.post("/api/indicators/import", json={"Indicators": too_many[:500]})
    assert ok.status_code == 200
    assert not any(r["isFailed"] for r in ok.json()["value"])


def test_list_filter_top_skip(mde):
    mde.post("/api/indicators", json=_indicator())
    mde.post("/api/indicators", json=_indicator(indicatorType="DomainName", indicatorValue="evil.example", title="dom"))
    mde.post(
        "/api/indicators", json=_indicator(indicatorType="IpAddress", indicatorValue="203.0.113.7", action="Block")
    )

    def listed(filter_: str) -> list[str]:
        return _values(mde.get("/api/indicators", params={"$filter": filter_}))

    assert listed(f"indicatorValue eq '{SHA256}'") == [SHA256]
    assert listed("indicatorType eq 'DomainName'") == ["evil.example"]
    assert listed("title eq 'dom'") == ["evil.example"]
    assert listed(f"createdBy eq '{CLIENT}' and action eq 'Block'") == ["203.0.113.7"]
    assert listed("action eq 'AlertAndBlock'") == [SHA256, "evil.example"]
    assert _values(mde.get("/api/indicators", params={"$top": 1, "$skip": 1})) == ["evil.example"]
    assert mde.get("/api/indicators", params={"$filter": "nope eq 1"}).status_code == 400


def test_ti_readwrite_sees_only_its_own_indicators(make_mde):
    raw = mde_scenario_raw()
    raw["defender"]["indicators"] = [
        {"id": "7", "indicatorValue": "portal.example", "indicatorType": "DomainName", "action": "Block"}
    ]
    raw["defender"]["permissions"] = ["Ti.ReadWrite"]
    own = make_mde(raw)
    own.post("/api/indicators", json=_indicator())
    assert _values(own.get("/api/indicators")) == [SHA256]
    assert own.call("DELETE", "/api/indicators/7").status_code == 404
    raw["defender"]["permissions"] = ["Ti.ReadWrite.All"]
    everything = make_mde(raw)
    everything.post("/api/indicators", json=_indicator())
    assert _values(everything.get("/api/indicators")) == ["portal.example", SHA256]


def test_expired_indicators_are_not_returned(mde):
    expiry = (mde.clock.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    mde.post("/api/indicators", json=_indicator(expirationTime=expiry))
    mde.post("/api/indicators", json=_indicator(indicatorType="DomainName", indicatorValue="keep.example"))
    assert _values(mde.get("/api/indicators")) == [SHA256, "keep.example"]
    mde.advance(3601)
    assert _values(mde.get("/api/indicators")) == ["keep.example"]
    assert len(mde.inspect("indicators")["value"]) == 2


def test_delete_and_batch_delete(mde):
    ids = [mde.post("/api/indicators", json=_indicator(indicatorValue=f"{i:064x}")).json()["id"] for i in range(4)]
    assert mde.call("DELETE", f"/api/indicators/{ids[0]}").status_code == 204
    assert mde.call("DELETE", f"/api/indicators/{ids[0]}").status_code == 404
    missing = mde.post("/api/indicators/BatchDelete", json={"IndicatorIds": [ids[1], "999999"]})
    assert missing.status_code == 404
    assert len(mde.inspect("indicators")["value"]) == 3  # all or nothing
    bad_bodies: list[dict[str, Any]] = [{"IndicatorIds": []}, {"IndicatorIds": ["abc"]}, {"indicatorIds": [ids[1]]}]
    for body in bad_bodies:
        assert mde.post("/api/indicators/BatchDelete", json=body).status_code == 400
    too_many = mde.post("/api/indicators/BatchDelete", json={"IndicatorIds": [str(i) for i in range(501)]})
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "MaximumBatchSizeExceeded"
    assert mde.post("/api/indicators/BatchDelete", json={"IndicatorIds": ids[1:]}).status_code == 204
    assert mde.inspect("indicators")["value"] == []


def test_active_indicator_limit(make_mde):
    raw = mde_scenario_raw()
    raw["defender"]["max_active_indicators"] = 3
    mde = make_mde(raw)
    for i in range(3):
        assert mde.post("/api/indicators", json=_indicator(indicatorValue=f"{i:064x}")).status_code == 200
    full = mde.post("/api/indicators", json=_indicator(indicatorValue=f"{9:064x}"))
    assert full.status_code == 400
    assert "limit of 3 active indicators" in full.json()["error"]["message"]
    assert mde.post("/api/indicators", json=_indicator(indicatorValue=f"{0:064x}", title="update")).status_code == 200
