"""Verdict actions on in-memory ports: what is chosen, batched, capped, refused, and pushed once."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest
from rich.console import Console

from joedefender.adapters._writes import Create, Update
from joedefender.domain.errors import Transient
from joedefender.domain.indicator_values import AllowList
from joedefender.domain.indicators import IndicatorPolicy, propose
from joedefender.domain.jobs import AlertState, PushState
from joedefender.domain.retry import RetryPolicy
from joedefender.domain.verdicts import Ioc, IocSet
from joedefender.hosts.standalone.status import print_status
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.context import Outcome
from joedefender.pipeline.verdicts import indicators
from joedefender.pipeline.verdicts.indicators import MAX_PUSHES
from tests.fakes import file_alert
from tests.pipeline.test_steps import M1, PAYLOAD, SHA, Rig

DROPPED = "b" * 64
IOCS = IocSet(
    file_hashes=(Ioc(value=DROPPED, malicious=True), Ioc(value="c" * 64, malicious=False)),
    domains=(
        Ioc(value="c2.evil.example", malicious=True),
        Ioc(value="download.windowsupdate.com", malicious=True),
        Ioc(value="benign.example", malicious=False),
    ),
    ips=(Ioc(value="185.195.25.79", malicious=True), Ioc(value="8.8.4.4", malicious=True)),
    urls=(Ioc(value="http://10.0.0.5/x", malicious=True), Ioc(value="https://c2.evil.example/gate", malicious=True)),
)
ON = IndicatorPolicy(enabled=True)


def _rig(policy: IndicatorPolicy = ON, **config: Any) -> Rig:
    """One machine carrying PAYLOAD, which Joe finds malicious with IOCS."""
    rig = Rig(config=PipelineConfig(indicators=policy, **config))
    rig.defender.add_machine(M1)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = PAYLOAD
    rig.sandbox.verdicts[SHA] = ("malicious", 91)
    rig.sandbox.iocs_of[SHA] = IOCS
    return rig


def _values(rig: Rig) -> set[tuple[str, str]]:
    return {(i.type, i.value) for i in rig.defender.indicators.values()}


def test_propose_keeps_the_sample_and_malicious_public_iocs_only() -> None:
    proposal = propose(SHA, None, IOCS, AllowList(), cap=50)
    assert set(proposal.entries) == {
        ("FileSha256", SHA),
        ("FileSha256", DROPPED),
        ("DomainName", "c2.evil.example"),
        ("IpAddress", "185.195.25.79"),
        ("Url", "https://c2.evil.example/gate"),
    }
    assert proposal.skipped == {"allow-listed": 2, "private or reserved IP": 1}


def test_loopback_link_local_multicast_and_private_addresses_are_never_proposed() -> None:
    ips = (
        "203.0.113.9",
        "127.0.0.1",
        "169.254.1.1",
        "224.0.0.1",
        "192.168.1.1",
        "::1",
        "fe80::1",
        "::ffff:10.0.0.1",
        "0.0.0.0",  # noqa: S104 (a value, not a bind address)
    )
    iocs = IocSet(ips=tuple(Ioc(value=ip, malicious=True) for ip in ips))
    assert propose(None, None, iocs, AllowList(), cap=50).entries == ()


def test_the_user_extends_the_allow_list() -> None:
    allow = AllowList.extended(["evil.example", "185.195.25.0/24", DROPPED])
    assert propose(SHA, None, IOCS, allow, cap=50).entries == (("FileSha256", SHA),)


def test_a_malicious_sample_pushes_audit_indicators_with_expiry_and_severity() -> None:
    rig = _rig()
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    assert len(rig.defender.indicators) == 5
    for indicator in rig.defender.indicators.values():
        assert (indicator.action, indicator.generate_alert, indicator.severity) == ("Audit", True, "High")
        assert indicator.application == "joedefender"
        assert "a1" in indicator.description
        assert SHA in indicator.description
        assert abs(indicator.expires_at.timestamp() - (rig.clock.t + 30 * 86400)) < 120
    push = rig.ctx.pushes.get(f"sha256:{SHA}")
    assert push is not None
    assert push.record.state == PushState.DONE
    assert sorted(push.record.ids) == sorted(rig.defender.indicators)
    assert ("indicators", "pushed") in rig.history(f"sha256:{SHA}")
    assert rig.defender.calls["import_indicators"] == 1


def test_a_second_alert_extends_the_expiry_without_a_duplicate() -> None:
    rig = _rig()
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    first = {i: e.expires_at for i, e in rig.defender.indicators.items()}
    rig.clock.t += 86400
    rig.receive(file_alert("a2", M1, PAYLOAD))
    rig.drain()
    assert set(rig.defender.indicators) == set(first)
    assert all(rig.defender.indicators[i].expires_at > first[i] for i in first)
    assert all("a2" in e.description for e in rig.defender.indicators.values())
    assert ("indicators", "refreshed") in rig.history(f"sha256:{SHA}")


def test_off_and_clean_push_nothing() -> None:
    rig = _rig(IndicatorPolicy())
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    clean = _rig()
    clean.sandbox.verdicts[SHA] = ("clean", 0)
    clean.receive(file_alert("a1", M1, PAYLOAD))
    clean.drain()
    assert rig.defender.indicators == {}
    assert clean.defender.indicators == {}
    assert rig.defender.calls["import_indicators"] == clean.defender.calls["import_indicators"] == 0


def test_the_per_sample_cap_holds_and_says_so() -> None:
    rig = _rig(replace(ON, per_sample_cap=2))
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    assert _values(rig) == {("FileSha256", SHA), ("FileSha256", DROPPED)}
    (line,) = [h for h in rig.store.history(f"sha256:{SHA}") if h.outcome == "chosen"]
    assert "3 over the per-sample cap" in line.detail


def test_the_tenant_limit_refuses_and_the_comment_is_still_written() -> None:
    rig = _rig(replace(ON, tenant_limit=100, tenant_headroom=98))
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    assert rig.defender.indicators == {}
    push = rig.ctx.pushes.get(f"sha256:{SHA}")
    assert push is not None
    assert push.record.state == PushState.REFUSED
    assert "tenant limit" in (push.record.failure or "")
    assert ("indicators", "refused") in rig.history(f"sha256:{SHA}")
    assert any(c.startswith("Joe Sandbox: MALICIOUS") for c in rig.defender.comments("a1"))


def test_the_per_hour_cap_defers_to_the_next_hour() -> None:
    rig = _rig(replace(ON, per_hour_cap=5))
    other = b"MZ another payload"
    rig.defender.files[(M1, "C:\\Users\\u\\y.exe")] = other
    rig.sandbox.verdicts[hashlib.sha256(other).hexdigest()] = ("malicious", 80)
    rig.sandbox.iocs_of[hashlib.sha256(other).hexdigest()] = IOCS
    start = rig.clock.t
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    rig.receive(file_alert("a2", M1, other, name="y.exe"))
    rig.drain()
    assert len(rig.defender.indicators) == 6  # 5 + 5, sharing the dropped file, domain, IP and URL
    assert rig.clock.t - start >= 3600


def test_a_failed_import_is_retried_visibly_and_pushed_once() -> None:
    rig = _rig()
    rig.defender.fail("import_indicators", Transient("503 from Defender"), times=2)
    rig.defender.fail("import_indicators", Transient("answer lost"), times=1, after=True)
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    assert len(rig.defender.indicators) == 5
    steps = rig.history(f"sha256:{SHA}")
    assert steps.count(("indicators", "will retry")) == 3
    assert ("indicators", "pushed") in steps
    assert rig.defender.calls["find_indicators"] >= 1  # looked before importing again
    # the lost answer's import had landed with the expiry asked for: nothing imported again
    assert rig.defender.calls["import_indicators"] == 3


def test_samples_finishing_together_share_one_import() -> None:
    rig = _rig(action_polls_per_minute=10_000)  # the polls of the ten actions not spread over the budget
    # Ten: the live responses a minute allows (runliveresponse, 10 a minute), so they start together.
    payloads = [f"MZ sample {n}".encode() for n in range(10)]
    machines = [f"{n:040x}" for n in range(10)]  # one live response per machine: collected side by side
    for machine, payload in zip(machines, payloads, strict=True):
        rig.defender.add_machine(machine)
        rig.defender.files[(machine, "C:\\Users\\u\\x.exe")] = payload
        rig.sandbox.verdicts[hashlib.sha256(payload).hexdigest()] = ("malicious", 90)
        rig.sandbox.iocs_of[hashlib.sha256(payload).hexdigest()] = IOCS  # the same C2 for all
    rig.receive(*[file_alert(f"a{n}", m, p) for n, (m, p) in enumerate(zip(machines, payloads, strict=True))])
    rig.drain()
    assert len(rig.defender.indicators) == 10 + 4  # each sample's hash, and the shared four once
    assert rig.defender.calls["import_indicators"] == 1
    pushes = [p.record for p in rig.ctx.pushes.list()]
    shared = {i for i, e in rig.defender.indicators.items() if e.value == DROPPED}
    assert all(shared <= set(p.ids) for p in pushes)  # every sample's push records the shared id


def test_a_batch_takes_at_most_max_pushes_samples_so_each_commit_fits_a_store_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = _rig(max_live_response_sessions=1000, live_response_starts_per_minute=100_000)
    # Samples finish spread over minutes (paced polls): the batch step waits here until every
    # sample is done, so all their pushes are ready at once and the cap alone splits them.
    batch_step = indicators.BatchStep.run

    def after_every_sample(step: indicators.BatchStep) -> Outcome:
        if any(not job.record.state.final for job in rig.ctx.jobs.list()):
            return rig.ctx.later(5)
        return batch_step(step)

    monkeypatch.setattr(indicators.BatchStep, "run", after_every_sample)
    count = MAX_PUSHES + 10
    payloads = [f"MZ sample {n}".encode() for n in range(count)]
    machines = [f"{n:040x}" for n in range(count)]
    for machine, payload in zip(machines, payloads, strict=True):
        rig.defender.add_machine(machine)
        rig.defender.files[(machine, "C:\\Users\\u\\x.exe")] = payload
        rig.sandbox.verdicts[hashlib.sha256(payload).hexdigest()] = ("malicious", 90)
        rig.sandbox.iocs_of[hashlib.sha256(payload).hexdigest()] = IocSet()  # the sample's own hash only
    documents_per_commit: list[int] = []
    apply = rig.store._apply

    def counting(operations: Any) -> Any:
        documents_per_commit.append(sum(1 for op in operations if isinstance(op, Create | Update)))
        return apply(operations)

    rig.store._apply = counting  # type: ignore[method-assign]
    rig.receive(*[file_alert(f"a{n}", m, p) for n, (m, p) in enumerate(zip(machines, payloads, strict=True))])
    rig.drain(max_steps=20_000)
    assert len(rig.defender.indicators) == count  # 100 values: one import would have held them
    assert rig.defender.calls["import_indicators"] == 2
    assert all(p.record.state == PushState.DONE for p in rig.ctx.pushes.list())
    assert max(documents_per_commit) == MAX_PUSHES + 1  # the batch's pushes and the budget


def test_a_malicious_verdict_classifies_the_alert_when_asked() -> None:
    rig = _rig(IndicatorPolicy(), classify_alerts=True)
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    alert = rig.defender.alerts["a1"]
    assert (alert.classification, alert.determination) == ("TruePositive", "Malware")
    assert ("classification", "classified") in rig.history("alert:a1")
    assert rig.defender.calls["classify_alert"] == 1


def test_an_analysts_classification_and_a_resolved_alert_are_left_alone() -> None:
    rig = _rig(IndicatorPolicy(), classify_alerts=True)
    rig.receive(file_alert("a1", M1, PAYLOAD), file_alert("a2", M1, PAYLOAD))
    while any(a.record.state == AlertState.RECEIVED for a in rig.ctx.alerts.list()):
        assert rig.app.run_next("worker")
    # The analysts act while the sample is being analysed.
    rig.defender.alerts["a1"] = replace(
        rig.defender.alerts["a1"], classification="FalsePositive", determination="Clean"
    )
    rig.defender.alerts["a2"] = replace(rig.defender.alerts["a2"], status="Resolved")
    rig.drain()
    assert (rig.defender.alerts["a1"].classification, rig.defender.alerts["a1"].determination) == (
        "FalsePositive",
        "Clean",
    )
    assert rig.defender.alerts["a2"].classification is None
    assert rig.defender.calls["classify_alert"] == 0
    assert ("classification", "left alone") in rig.history("alert:a1")
    assert ("classification", "left alone") in rig.history("alert:a2")


def test_no_classification_unless_asked_or_for_a_suspicious_verdict() -> None:
    off = _rig()
    off.receive(file_alert("a1", M1, PAYLOAD))
    off.drain()
    suspicious = _rig(IndicatorPolicy(), classify_alerts=True)
    suspicious.sandbox.verdicts[SHA] = ("suspicious", 60)
    suspicious.receive(file_alert("a1", M1, PAYLOAD))
    suspicious.drain()
    assert off.defender.alerts["a1"].classification is None
    assert suspicious.defender.alerts["a1"].classification is None
    assert off.defender.calls["classify_alert"] == suspicious.defender.calls["classify_alert"] == 0


def test_an_ioc_report_that_never_comes_ends_the_push_with_a_reason() -> None:
    retry = RetryPolicy(max_retries=3, first=1.0, cap=1.0, jitter="none")
    rig = _rig(step_retry=retry)
    rig.sandbox.fail("iocs", Transient("Joe is down"), times=10)
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    push = rig.ctx.pushes.get(f"sha256:{SHA}")
    assert push is not None
    assert push.record.state == PushState.REFUSED
    assert "3 failed tries" in (push.record.failure or "")
    steps = rig.history(f"sha256:{SHA}")
    assert steps.count(("indicators", "will retry")) == 3
    assert ("indicators", "failed") in steps
    assert rig.defender.indicators == {}
    assert any(c.startswith("Joe Sandbox: MALICIOUS") for c in rig.defender.comments("a1"))


def test_status_shows_each_push_with_its_indicator_ids() -> None:
    rig = _rig(replace(ON, per_sample_cap=3))
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    console = Console(record=True, width=250)
    assert print_status(rig.app.status, console)
    text = console.export_text()
    assert "Indicators" in text
    for indicator_id in rig.defender.indicators:
        assert indicator_id in text
    assert "over the per-sample cap" in text
