"""The pure rules: which alerts and evidence are worked on, sample identity, policy, comments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from joedefender.adapters.defender.models import Alert
from joedefender.domain.comments import has_marker, marker, render_failure, render_verdict
from joedefender.domain.policy import ResubmitPolicy
from joedefender.domain.samples import InvalidSampleError, SampleKey, normalise_url
from joedefender.domain.triage import AlertFilters, triage

SHA = "a" * 64


def _alert(**fields: Any) -> Alert:
    body: dict[str, Any] = {
        "id": "da1_1",
        "detectionSource": "WindowsDefenderAtp",
        "severity": "High",
        "status": "New",
        "title": "Suspicious thing",
        "machineId": "1" * 40,
        "evidence": [{"entityType": "File", "sha256": SHA.upper(), "fileName": "x.exe", "filePath": "C:\\t"}],
    }
    body.update(fields)
    return Alert.model_validate(body)


def test_filters_match_without_regard_to_case() -> None:
    filters = AlertFilters.of(["WindowsDefenderAV"], ["HIGH"], ["new"])
    assert triage(_alert(detectionSource="windowsdefenderav", severity="high", status="NEW"), filters).accepted


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"detectionSource": "CustomDetection"}, "detection source 'CustomDetection'"),
        ({"status": "Resolved"}, "status 'Resolved'"),
        ({"severity": "Low"}, "severity 'Low'"),
        ({"title": "Other"}, "DefenderAlertTitleFilter"),
    ],
)
def test_an_alert_outside_the_filters_is_skipped_with_the_reason(fields: dict[str, Any], reason: str) -> None:
    filters = AlertFilters.of(["WindowsDefenderAtp"], ["High"], ["New"], ["suspicious"])
    decision = triage(_alert(**fields), filters)
    assert not decision.accepted
    assert reason in decision.reason


def test_evidence_is_deduplicated_and_what_cannot_be_analysed_is_said() -> None:
    decision = triage(
        _alert(
            evidence=[
                {"entityType": "File", "sha256": SHA, "fileName": "a.exe", "filePath": "C:\\a"},
                {"entityType": "File", "sha256": SHA.upper(), "fileName": "b.exe", "filePath": "C:\\b"},
                {"entityType": "File", "sha256": None, "fileName": "nohash.exe"},
                {"entityType": "File", "sha256": "not-a-hash"},
                {"entityType": "Url", "url": "https://Example.com:443/a#x"},
                {"entityType": "Url", "url": "https://example.com/a"},
                {"entityType": "Process", "processId": 4},
            ]
        ),
        AlertFilters(),
    )
    assert decision.accepted
    assert [f.sha256 for f in decision.files] == [SHA]
    assert decision.files[0].path == "C:\\a\\a.exe"
    assert [u.key.value for u in decision.urls] == ["https://example.com/a"]
    skipped = " | ".join(decision.skipped_evidence)
    assert "has no sha256" in skipped
    assert "not a SHA-256" in skipped
    assert "Process evidence is not analysed" in skipped


def test_an_alert_without_file_or_url_evidence_is_skipped() -> None:
    decision = triage(_alert(evidence=[{"entityType": "User", "accountName": "a"}]), AlertFilters())
    assert not decision.accepted
    assert decision.reason == "no file (sha256) or URL evidence"


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
    week = ResubmitPolicy.from_settings(True, 7)
    assert not week.resubmit(now - timedelta(days=2), now)
    assert week.resubmit(now - timedelta(days=8), now)
    assert week.resubmit(None, now)
    assert ResubmitPolicy.from_settings(True, None).resubmit(now, now)
    assert not ResubmitPolicy.from_settings(False, None).resubmit(now - timedelta(days=999), now)


def test_the_verdict_comment_reads_at_a_glance_and_carries_the_marker() -> None:
    text = render_verdict(
        {
            "detection": "malicious",
            "score": 92,
            "threat_names": ["Emotet", "Heodo"],
            "classification": "trojan",
            "systems": ["w10x64"],
            "link": "https://jbxcloud.joesecurity.org/analysis/1/0/html",
            "time": "2026-11-25T10:00:00+00:00",
        },
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
