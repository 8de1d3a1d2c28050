"""Verdict actions end to end: indicators in the MDE emulator, which enforces Defender's rules
(required fields, Audit needs generateAlert, at most 500 per import, 30 imports a minute, 15,000
active), fed by the Joe emulator's IOC reports, over real sockets."""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from joedefender.bootstrap import open_connector
from joedefender.domain.jobs import PushState
from joedefender.pipeline.clock import Clock
from tests.hosts import environment, joedefender
from tests.pipeline.builders import alert, file_evidence, machine, world
from tests.world import World, drain, scenario

WorldFactory = Callable[..., World]

_PATH = "C:\\Users\\x\\Downloads\\payload.exe"
_OTHER = "C:\\Users\\x\\Downloads\\other.exe"
STAGE2 = hashlib.sha256(b"stage two").hexdigest()
PAYLOAD_SHA = hashlib.sha256(b"payload bytes").hexdigest()
OTHER_SHA = hashlib.sha256(b"other bytes").hexdigest()
ON = {"DefenderIndicatorsEnabled": "true"}
IOCS = {
    "domains": [
        {"value": "c2.evil.example", "malicious": True},
        {"value": "settings-win.data.microsoft.com", "malicious": True},  # shipped allow-list
        {"value": "harmless.example", "malicious": False},  # Joe does not flag it
    ],
    "ips": [
        {"value": "185.195.25.79", "malicious": True},
        {"value": "10.1.2.3", "malicious": True},  # private
        {"value": "169.254.169.254", "malicious": True},  # link-local
        {"value": "239.255.255.250", "malicious": True},  # multicast
    ],
    "urls": [{"value": "http://c2.evil.example/gate.php", "malicious": True}],
    "dropped": [{"sha256": STAGE2, "name": "stage2.dll", "malicious": True}],
}
EXPECTED = {
    ("FileSha256", PAYLOAD_SHA),
    ("FileSha256", STAGE2),
    ("DomainName", "c2.evil.example"),
    ("IpAddress", "185.195.25.79"),
    ("Url", "http://c2.evil.example/gate.php"),
}


def _world(
    make_world: WorldFactory,
    *,
    other: bool = False,
    defender: dict[str, Any] | None = None,
    faults: list[dict[str, Any]] | None = None,
    **settings: str,
) -> tuple[World, list[str]]:
    alerts = [alert(1, 1, file_evidence("payload", _PATH)), alert(2, 1, file_evidence("payload", _PATH))]
    verdicts = [{"sample": "payload", "detection": "malicious", "score": 97, "threatname": "Qakbot", "iocs": IOCS}]
    if other:
        alerts.append(alert(3, 1, file_evidence("other", _OTHER)))
        verdicts.append({"sample": "other", "detection": "malicious", "score": 90, "iocs": IOCS})
    raw = world(
        samples={"payload": "payload bytes", "other": "other bytes"},
        machines=[machine(1, files={_PATH: "payload", _OTHER: "other"})],
        alerts=alerts,
        verdicts=verdicts,
        **(defender or {}),
    )
    raw["faults"] = faults or []
    return make_world(scenario(raw), **(ON | settings)), [a["id"] for a in alerts]


def _indicators(w: World) -> list[dict[str, Any]]:
    return list(w.defender("/_emulator/indicators"))


def _ours(w: World) -> list[dict[str, Any]]:
    return [i for i in _indicators(w) if i.get("application") == "joedefender"]


def _expiry(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(item["expirationTime"]).replace("Z", "+00:00")[:26] + "+00:00")


def test_a_malicious_sample_yields_the_expected_indicators_and_a_second_alert_extends_them(
    make_world: WorldFactory,
) -> None:
    w, (first, second) = _world(make_world, DefenderIndicatorActionForMaliciousFile="Block")
    w.process(first)

    ours = _ours(w)
    assert {(i["indicatorType"], i["indicatorValue"]) for i in ours} == EXPECTED  # nothing allow-listed or private
    soon = datetime.now(UTC) + timedelta(days=30)
    for item in ours:
        expected_action = "Block" if item["indicatorType"] == "FileSha256" else "Audit"
        assert (item["action"], item["severity"], item["generateAlert"]) == (expected_action, "High", True)
        assert abs((_expiry(item) - soon).total_seconds()) < 120
        assert item["title"].startswith("joedefender:")
        assert first in item["description"]
        assert PAYLOAD_SHA in item["description"]
        assert "/analysis/" in item["description"]
    before = {i["id"]: _expiry(i) for i in ours}
    with w.connector() as connector:
        push = connector.ctx.pushes.get(f"sha256:{PAYLOAD_SHA}")
        assert push is not None
        assert push.record.state == PushState.DONE
        assert sorted(push.record.ids) == sorted(before)

    # A day later, the same sample on another alert: the same indicators, their expiry extended.
    with open_connector(
        w.settings, clock=Clock(scale=w.scenario.time_scale, source=lambda: time.time() + 86400)
    ) as connector:
        connector.app.receive(second, source="test")
        drain(connector, 60)
    after = _ours(w)
    assert Counter((i["indicatorType"], i["indicatorValue"]) for i in after) == Counter(EXPECTED)
    assert {i["id"] for i in after} == set(before)
    for item in after:
        assert _expiry(item) - before[item["id"]] > timedelta(hours=23)
        assert second in item["description"]
    assert w.calls("indicators.import") == 2


def test_the_per_sample_cap_and_the_tenant_headroom_hold(make_world: WorldFactory) -> None:
    capped, (a1, _) = _world(make_world, DefenderIndicatorMaxPerSample="2")
    capped.process(a1)
    assert {(i["indicatorType"], i["indicatorValue"]) for i in _ours(capped)} == {
        ("FileSha256", PAYLOAD_SHA),
        ("FileSha256", STAGE2),
    }

    # A ceiling of 6 (15,000 less a headroom of 14,994) with 2 there already: 5 more would pass it.
    seeded = [
        {"indicatorValue": f"{n:064x}", "indicatorType": "FileSha256", "action": "Audit", "title": "t",
         "description": "d", "generateAlert": True}
        for n in range(2)
    ]  # fmt: skip
    full, (b1, _) = _world(make_world, defender={"indicators": seeded}, DefenderIndicatorTenantHeadroom=str(15000 - 6))
    full.process(b1)
    assert _ours(full) == []
    with full.connector() as connector:
        push = connector.ctx.pushes.get(f"sha256:{PAYLOAD_SHA}")
        assert push is not None
        assert push.record.state == PushState.REFUSED
        assert "tenant limit" in (push.record.failure or "")
        lines = [(h.step, h.outcome) for h in connector.store.history(f"sha256:{PAYLOAD_SHA}")]
    assert ("indicators", "refused") in lines
    assert any(c.startswith("Joe Sandbox: MALICIOUS") for c in full.comments(b1))  # the enrichment went on


def test_the_emulators_tenant_cap_refuses_what_goes_beyond_it(make_world: WorldFactory) -> None:
    w, (a1, _) = _world(make_world, defender={"max_active_indicators": 3})
    w.process(a1)
    assert len(_ours(w)) == 3
    with w.connector() as connector:
        push = connector.ctx.pushes.get(f"sha256:{PAYLOAD_SHA}")
        assert push is not None
        assert "2 refused by Defender" in (push.record.failure or "")


def test_an_import_failing_with_429_and_5xx_is_retried_to_completion(make_world: WorldFactory) -> None:
    faults = [
        {"service": "defender", "method": "POST", "path": "^/api/indicators/import", "status": 429,
         "retry_after": 1, "times": 2},
        {"service": "defender", "method": "POST", "path": "^/api/indicators/import", "status": 503, "times": 2},
    ]  # fmt: skip
    w, (a1, _) = _world(make_world, faults=faults, DefenderApiMaxRetry="0")  # every failure reaches the step
    w.process(a1)
    assert Counter((i["indicatorType"], i["indicatorValue"]) for i in _ours(w)) == Counter(EXPECTED)
    statuses = w.defender("/_emulator/calls")["indicators.import"]["statuses"]
    assert statuses == {"200": 1, "429": 2, "503": 2}
    with w.connector() as connector:
        lines = [(h.step, h.outcome) for h in connector.store.history(f"sha256:{PAYLOAD_SHA}")]
        push = connector.ctx.pushes.get(f"sha256:{PAYLOAD_SHA}")
    assert lines.count(("indicators", "will retry")) == 4
    assert ("indicators", "pushed") in lines
    assert push is not None
    assert push.record.state == PushState.DONE


def test_expire_withdraws_only_the_connectors_own(make_world: WorldFactory) -> None:
    theirs = {
        "indicatorValue": "c2.evil.example", "indicatorType": "DomainName", "action": "Block", "title": "SOC block",
        "description": "by hand", "generateAlert": True,
    }  # fmt: skip
    w, (a1, _, a3) = _world(make_world, other=True, defender={"indicators": [theirs]})
    w.process(a1, a3)
    ours = _ours(w)
    # The analyst's indicator on the C2 domain is left as it is: neither overwritten nor duplicated.
    assert {i["indicatorValue"] for i in ours} == {v for _, v in EXPECTED} - {"c2.evil.example"} | {OTHER_SHA}
    (analysts,) = [i for i in _indicators(w) if i["indicatorValue"] == "c2.evil.example"]
    assert (analysts["action"], analysts["title"]) == ("Block", "SOC block")
    env = environment(w.values)
    scale = ["--time-scale", str(w.scenario.time_scale)]

    def cli(*args: str, answer: str | None = None) -> subprocess.CompletedProcess[str]:
        command = joedefender("indicators", *args, *scale)
        return subprocess.run(command, env=env, input=answer, capture_output=True, text=True, check=False, timeout=60)

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert all(i["id"] in listed.stdout for i in ours)
    assert "SOC block" not in listed.stdout

    one = cli("expire", "--sample", OTHER_SHA)
    assert one.returncode == 0, one.stderr
    assert "withdrew 1 indicator(s)" in one.stdout  # only the other sample's own hash: the rest is shared
    assert OTHER_SHA not in {i["indicatorValue"] for i in _ours(w)}
    assert len(_ours(w)) == len(ours) - 1

    declined = cli("expire", "--all", answer="n\n")
    assert declined.returncode == 1
    assert len(_ours(w)) == len(ours) - 1

    everything = cli("expire", "--all", "--yes")
    assert everything.returncode == 0, everything.stderr
    assert _ours(w) == []
    assert [i["title"] for i in _indicators(w)] == ["SOC block"]


def test_alert_classification_marks_only_unclassified_alerts(make_world: WorldFactory) -> None:
    decided = alert(2, 1, file_evidence("payload", _PATH)) | {
        "classification": "FalsePositive",
        "determination": "Other",
    }
    raw = world(
        samples={"payload": "payload bytes"},
        machines=[machine(1, files={_PATH: "payload"})],
        alerts=[alert(1, 1, file_evidence("payload", _PATH)), decided],
        verdicts=[{"sample": "payload", "detection": "malicious", "score": 97}],
    )
    w = make_world(scenario(raw), DefenderAlertClassification="true")
    first = raw["defender"]["alerts"][0]["id"]
    w.process(first, decided["id"])
    alerts = {a["id"]: a for a in w.defender("/_emulator/alerts")}
    assert (alerts[first]["classification"], alerts[first]["determination"]) == ("TruePositive", "Malware")
    assert (alerts[decided["id"]]["classification"], alerts[decided["id"]]["determination"]) == (
        "FalsePositive",
        "Other",
    )
    assert all(len([c for c in w.comments(a) if "joedefender ref" in c]) == 1 for a in alerts)
    with w.connector() as connector:
        lines = {a: [(h.step, h.outcome) for h in connector.store.history(f"alert:{a}")] for a in alerts}
    assert ("classification", "classified") in lines[first]
    assert ("classification", "left alone") in lines[decided["id"]]
