"""The pure rules: which alerts and evidence are worked on, sample identity, policy, comments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from joedefender.domain.alerts import Alert, Evidence
from joedefender.domain.comments import has_marker, marker, render_failure, render_verdict
from joedefender.domain.policy import ResubmitPolicy
from joedefender.domain.samples import InvalidSampleError, SampleKey, normalise_url
from joedefender.domain.triage import AlertFilters, triage
from joedefender.domain.verdicts import Verdict

SHA = "a" * 64


def _alert(evidence: list[Evidence] | None = None, **fields: Any) -> Alert:
    body: dict[str, Any] = {
        "id": "da1_1",
        "detection_source": "WindowsDefenderAtp",
        "severity": "High",
        "status": "New",
        "title": "Suspicious thing",
        "machine_id": "1" * 40,
    }
    body.update(fields)
    if evidence is None:
        evidence = [Evidence(entity_type="File", sha256=SHA.upper(), file_name="x.exe", file_path="C:\\t")]
    return Alert(evidence=tuple(evidence), **body)


def test_filters_match_without_regard_to_case() -> None:
    filters = AlertFilters.of(["WindowsDefenderAV"], ["HIGH"], ["new"])
    assert triage(_alert(detection_source="windowsdefenderav", severity="high", status="NEW"), filters).accepted


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"detection_source": "CustomDetection"}, "detection source 'CustomDetection'"),
        ({"status": "Resolved"}, "status 'Resolved'"),
        ({"severity": "Low"}, "severity 'Low'"),
        ({"title": "Other"}, "DefenderAlertTitleFilter"),
    ],
)
def test_an_alert_outside_the_filters_is_skipped_with_the_reason(fields: dict[str, Any], reason: str) -> None:
    filters = AlertFilters.of(["WindowsDefenderAtp"], ["High"], ["New"], ["suspicious"])
    decision = triage(_alert(**fields), filters)
    assert not decision.accepted
    assert decision.cause is not None
    assert reason in decision.cause.text


def test_evidence_is_deduplicated_and_what_cannot_be_analysed_is_said() -> None:
    decision = triage(
        _alert(
            evidence=[
                Evidence(entity_type="File", sha256=SHA, file_name="a.exe", file_path="C:\\a"),
                Evidence(entity_type="File", sha256=SHA.upper(), file_name="b.exe", file_path="C:\\b"),
                Evidence(entity_type="File", sha256=None, file_name="nohash.exe"),
                Evidence(entity_type="File", sha256="not-a-hash"),
                Evidence(entity_type="Url", url="https://Example.com:443/a#x"),
                Evidence(entity_type="Url", url="https://example.com/a"),
                Evidence(entity_type="Process"),
            ]
        ),
        AlertFilters(),
    )
    assert decision.accepted
    assert [(key.value, evidence.sha256) for key, evidence in decision.files] == [(SHA, SHA)]
    assert decision.files[0][1].path == "C:\\a\\a.exe"
    assert [key.value for key in decision.urls] == ["https://example.com/a"]
    skipped = " | ".join(decision.skipped_evidence)
    assert "has no sha256" in skipped
    assert "not a SHA-256" in skipped
    assert "Process evidence is not analysed" in skipped


def test_an_alert_without_file_or_url_evidence_is_skipped() -> None:
    decision = triage(_alert(evidence=[Evidence(entity_type="User")]), AlertFilters())
    assert not decision.accepted
    assert decision.cause is not None
    assert decision.cause.text == "no file (sha256) or URL evidence"


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("HTTP://Example.COM:80/Path?q=1#frag", "http://example.com/Path?q=1"),
        ("https://example.com:8443", "https://example.com:8443/"),
        ("example.com/x", "http://example.com/x"),
        ("http://[2001:db8::1]:8080/a", "http://[2001:db8::1]:8080/a"),
    ],
)
def test_urls_have_one_spelling(url: str, normalised: str) -> None:
    assert normalise_url(url) == normalised
    assert SampleKey.for_url(url).id == SampleKey.for_url(normalised).id


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http://", "javascript:alert(1)", "http://h:99999/"])
def test_urls_that_are_not_http_are_refused(url: str) -> None:
    with pytest.raises(InvalidSampleError):
        normalise_url(url)


def test_resubmit_policy() -> None:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    week = ResubmitPolicy.of(True, 7)
    assert not week.resubmit(now - timedelta(days=2), now)
    assert week.resubmit(now - timedelta(days=8), now)
    assert week.resubmit(None, now)
    assert ResubmitPolicy.of(True, None).resubmit(now, now)
    assert not ResubmitPolicy.of(False, None).resubmit(now - timedelta(days=999), now)


def test_the_verdict_comment_reads_at_a_glance_and_carries_the_marker() -> None:
    text = render_verdict(
        Verdict(
            detection="malicious",
            score=92,
            threat_names=("Emotet", "Heodo"),
            classification="trojan",
            systems=("w10x64",),
            webid="1",
            link="https://jbxcloud.joesecurity.org/analysis/1/0/html",
            time=datetime(2026, 11, 25, 10, tzinfo=UTC),
        ),
        sample_key=f"sha256:{SHA}",
        subject=SHA,
        file_name="x.exe",
        reused=True,
    )
    lines = text.splitlines()
    assert lines[0] == "Joe Sandbox: MALICIOUS (score 92/100)"
    assert "Threat: Emotet, Heodo" in lines
    assert f"SHA-256: {SHA}" in lines
    assert "Analysis: https://jbxcloud.joesecurity.org/analysis/1/0/html" in lines
    assert "already analysed this sample on 2026-11-25" in text
    assert lines[-1] == marker(f"sha256:{SHA}")
    assert has_marker([None, "other", text], f"sha256:{SHA}")
    assert not has_marker([text], "sha256:" + "b" * 64)


def test_the_failure_comment_names_the_sample_and_the_reason() -> None:
    text = render_failure(
        sample_key="url:abc", subject="http://x.example/", file_name=None, reason="the analysis did not finish"
    )
    assert text.splitlines() == [
        "Joe Sandbox: not analysed",
        "Reason: the analysis did not finish",
        "URL: http://x.example/",
        marker("url:abc"),
    ]
