"""The comment an analyst reads on the alert: verdict first, then the facts, then the link.

The last line is a marker naming the sample, which is how write-back recognises its own comment
after a crash and never writes a second one.
"""

from __future__ import annotations

from collections.abc import Sequence

from joedefender.domain.verdicts import Verdict

MARKER_PREFIX = "joedefender ref "
_DETECTION_LABEL = {
    "malicious": "MALICIOUS",
    "suspicious": "SUSPICIOUS",
    "clean": "CLEAN",
    "unknown": "NO VERDICT",
}


def marker(sample_key: str) -> str:
    return f"{MARKER_PREFIX}{sample_key}"


def has_marker(comments: Sequence[str | None], sample_key: str) -> bool:
    tag = marker(sample_key)
    return any(tag in (text or "") for text in comments)


def render_verdict(
    verdict: Verdict,
    *,
    sample_key: str,
    subject: str,
    file_name: str | None,
    reused: bool,
) -> str:
    """`subject` is the SHA-256 or the URL; `reused` says the verdict came from an earlier analysis."""
    detection = verdict.detection
    lines = [f"Joe Sandbox: {_DETECTION_LABEL.get(detection, detection.upper())} (score {verdict.score}/100)"]
    if verdict.threat_names:
        lines.append(f"Threat: {', '.join(verdict.threat_names)}")
    if verdict.classification:
        lines.append(f"Classification: {verdict.classification}")
    if file_name:
        lines.append(f"File: {file_name}")
    lines.append(("URL: " if sample_key.startswith("url:") else "SHA-256: ") + subject)
    if verdict.systems:
        lines.append(f"Sandbox: {', '.join(verdict.systems)}")
    if verdict.link:
        lines.append(f"Analysis: {verdict.link}")
    if reused:
        when = verdict.time.isoformat()[:10] if verdict.time is not None else ""
        lines.append(f"(Joe Sandbox had already analysed this sample{' on ' + when if when else ''}.)")
    lines.append(marker(sample_key))
    return "\n".join(lines)


def render_failure(*, sample_key: str, subject: str, file_name: str | None, reason: str) -> str:
    lines = ["Joe Sandbox: not analysed", f"Reason: {reason}"]
    if file_name:
        lines.append(f"File: {file_name}")
    lines.append(("URL: " if sample_key.startswith("url:") else "SHA-256: ") + subject)
    lines.append(marker(sample_key))
    return "\n".join(lines)
