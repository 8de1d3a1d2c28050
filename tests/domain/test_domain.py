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
                Evidence(entity_type="Registry"),
            ]
        ),
        AlertFilters(),
    )
    assert decision.accepted
    assert [(key.value, evidence.sha256) for key, evidence in decision.files] == [(SHA, SHA)]
    assert decision.files[0][1].path == "C:\\a\\a.exe"
    # one job per normalised URL; what is submitted is the first spelling, as validated
    assert [(key.value, url) for key, url in decision.urls] == [("https://example.com/a", "https://example.com/a#x")]
    skipped = " | ".join(decision.skipped_evidence)
    assert "has no sha256" in skipped
    assert "not a SHA-256" in skipped
    assert "process image (unnamed) has no sha256" in skipped
    assert "Registry evidence is not analysed" in skipped


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


def _known(detection: str, score: int, days_old: int | None, now: datetime) -> Verdict:
    return Verdict(
        detection=detection,
        score=score,
        webid=f"{detection}-{days_old}",
        link=f"https://joe.example/{detection}-{days_old}",
        time=None if days_old is None else now - timedelta(days=days_old),
    )


def test_resubmit_policy_always_and_never() -> None:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    known = [_known("clean", 2, 1, now), _known("malicious", 90, 400, now)]
    assert ResubmitPolicy.of(True, None).decide(known, now) is None
    reuse = ResubmitPolicy.of(False, None).decide(known, now)
    assert reuse is not None
    assert reuse.verdict.detection == "malicious"
    assert ResubmitPolicy.of(False, None).decide([], now) is None


def test_resubmit_after_days_ages_the_newest_analysis_and_names_an_older_worse_one() -> None:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    week = ResubmitPolicy.of(True, 7)
    # A clean analysis from yesterday and a malicious one from 40 days ago: the newest is young,
    # so nothing is analysed again; the comment reports the young verdict and names the older one.
    reuse = week.decide([_known("malicious", 96, 40, now), _known("clean", 3, 1, now)], now)
    assert reuse is not None
    assert (reuse.verdict.detection, reuse.verdict.score) == ("clean", 3)
    assert reuse.older_more_severe is not None
    assert reuse.older_more_severe.detection == "malicious"
    # Among the young ones, the most severe is reused; nothing older is worse.
    reuse = week.decide(
        [_known("suspicious", 50, 2, now), _known("clean", 1, 1, now), _known("clean", 9, 30, now)], now
    )
    assert reuse is not None
    assert reuse.verdict.detection == "suspicious"
    assert reuse.older_more_severe is None
    # The newest is older than the age: analyse again.
    assert week.decide([_known("malicious", 99, 8, now), _known("clean", 1, 20, now)], now) is None
    assert week.decide([_known("malicious", 99, None, now)], now) is None


def test_the_comment_names_an_older_more_severe_analysis() -> None:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    text = render_verdict(
        _known("clean", 3, 1, now),
        sample_key=f"sha256:{SHA}",
        subject=SHA,
        file_name=None,
        reused=True,
        older=_known("malicious", 96, 40, now),
    )
    assert (
        "(An older analysis on 2026-10-18 found it MALICIOUS (score 96/100): https://joe.example/malicious-40)" in text
    )
    assert text.splitlines()[0] == "Joe Sandbox: CLEAN (score 3/100)"


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
