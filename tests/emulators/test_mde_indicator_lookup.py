"""Lookups of several indicator values in one request, and the fault list under `/_emulator/`."""

from __future__ import annotations

from typing import Any

from .conftest import mde_scenario_raw


def _indicator(value: str, kind: str = "DomainName") -> dict[str, Any]:
    return {
        "indicatorValue": value,
        "indicatorType": kind,
        "action": "Audit",
        "generateAlert": True,
        "title": "t",
        "description": "d",
    }


def test_a_lookup_of_several_values_matches_each_without_regard_to_case(mde) -> None:
    body = {"Indicators": [_indicator(f"host{n}.evil.example") for n in range(30)]}
    assert mde.post("/api/indicators/import", json=body).status_code == 200

    def values(filter_: str) -> list[str]:
        response = mde.get("/api/indicators", params={"$filter": filter_})
        assert response.status_code == 200, response.text
        return [i["indicatorValue"] for i in response.json()["value"]]

    wanted = " or ".join(
        f"indicatorValue eq '{v}'" for v in ("HOST3.evil.example", "host7.evil.example", "nope.example")
    )
    assert values(f"({wanted})") == ["host3.evil.example", "host7.evil.example"]
    # Mixed fields are not a set of values: each clause is still evaluated on its own.
    assert values("indicatorValue eq 'host1.evil.example' or title eq 'nothing'") == ["host1.evil.example"]
    assert values("indicatorValue eq 'host1.evil.example' or indicatorValue ne 'host2.evil.example'") == [
        f"host{n}.evil.example" for n in range(30) if n != 2
    ]
    assert values(f"({wanted}) and indicatorType eq 'IpAddress'") == []


def test_the_fault_rules_say_how_often_each_fired(make_mde) -> None:
    raw = mde_scenario_raw()
    raw["faults"] = [
        {"service": "defender", "method": "POST", "path": "^/api/indicators/import", "status": 503, "times": 2}
    ]
    mde = make_mde(raw)
    body = {"Indicators": [_indicator("c2.evil.example")]}
    statuses = [mde.post("/api/indicators/import", json=body).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    (rule,) = mde.inspect("faults")
    assert (rule["method"], rule["path"], rule["fired"], rule["left"]) == ("POST", "^/api/indicators/import", 2, 0)
