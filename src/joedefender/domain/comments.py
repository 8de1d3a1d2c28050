"""The comment an analyst reads on the alert: verdict first, then the facts, then the link.

The last line is a marker naming the sample, which is how write-back recognises its own comment
after a crash and never writes a second one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


def _join(values: Any) -> str:
    if isinstance(values, str):
        return values
    return ", ".join(str(v) for v in values or ())


def render_verdict(
    verdict: Mapping[str, Any],
    *,
    sample_key: str,
    subject: str,
    file_name: str | None,
    reused: bool,
) -> str:
    """`subject` is the SHA-256 or the URL; `reused` says the verdict came from an earlier analysis."""
    detection = str(verdict.get("detection") or "unknown").lower()
    score = verdict.get("score")
    lines = [f"Joe Sandbox: {_DETECTION_LABEL.get(detection, detection.upper())} (score {score}/100)"]
    threats = _join(verdict.get("threat_names"))
    if threats:
        lines.append(f"Threat: {threats}")
    if verdict.get("classification"):
        lines.append(f"Classification: {verdict['classification']}")
    if file_name:
        lines.append(f"File: {file_name}")
    lines.append(("URL: " if sample_key.startswith("url:") else "SHA-256: ") + subject)
    systems = _join(verdict.get("systems"))
    if systems:
        lines.append(f"Sandbox: {systems}")
    if verdict.get("link"):
        lines.append(f"Analysis: {verdict['link']}")
    if reused:
        when = str(verdict.get("time") or "")[:10]
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
