"""How a sample is presented to Joe Sandbox: its tags and the marker that finds it again."""

from __future__ import annotations

import uuid

from joedefender.domain.jobs import SampleJob


def new_nonce() -> str:
    """A short random id for an intent (an attempt, a submission) that its effect will carry."""
    return uuid.uuid4().hex[:16]


def submission_marker(job: SampleJob) -> str:
    assert job.submission is not None
    return f"joedefender-{job.submission.nonce}"


def submission_tags(job: SampleJob) -> list[str]:
    """JoeAz's tags (MSDefender-AV/EDR/URL-Alert, the threat) plus the alert and machine."""
    tags = ["joedefender"]
    if job.kind == "url":
        tags.append("MSDefender-URL-Alert")
    for candidate in job.candidates[:1]:
        source = "AV" if candidate.detection_source.lower() == "windowsdefenderav" else "EDR"
        tags.append(f"MSDefender-{source}-Alert")
        tags.append(f"alert-{candidate.alert_id}")
        tags.append(f"machine-{candidate.machine_id}")
        if candidate.threat_name:
            tags.append(candidate.threat_name)
    return tags
