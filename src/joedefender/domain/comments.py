"""The comment an analyst reads on the alert: verdict first, then the facts, then the link.

Every value that came from Defender or Joe is shown through `text.shown`: on one line, hidden
characters escaped, length capped, so the whole comment stays under `MAX_COMMENT` characters
(Defender documents no limit; this is ours). The last line is a marker naming the sample, which
is how write-back recognises its own comment after a crash and never writes a second one: it is
matched as a whole last line, and no attacker-sourced value can make a line of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from joedefender.domain.jobs import JobState, SampleJob
from joedefender.domain.markers import PREFIX, mark
from joedefender.domain.origins import Origin
from joedefender.domain.text import shown
from joedefender.domain.verdicts import Verdict

MARKER_PREFIX = PREFIX
MAX_COMMENT = 4000
_DETECTION_LABEL = {
    "malicious": "MALICIOUS",
    "suspicious": "SUSPICIOUS",
    "clean": "CLEAN",
    "unknown": "NO VERDICT",
}
# Caps per value; with the fixed text around them they keep a comment under MAX_COMMENT.
_NAME, _LIST, _URL, _LINK, _REASON, _LABEL = 260, 300, 1500, 500, 800, 80


def marker(sample_key: str) -> str:
    """The last line of every comment on the sample (`joedefender.domain.markers`)."""
    return mark(sample_key)


def has_marker(comments: Sequence[str | None], sample_key: str) -> bool:
    """Whether one of the comments is ours for this sample: its last line is exactly the marker."""
    tag = marker(sample_key)
    for text in comments:
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if lines and lines[-1] == tag:
            return True
    return False


def _subject_line(sample_key: str, subject: str) -> str:
    if sample_key.startswith("url:"):
        return "URL: " + shown(subject, _URL)
    return "SHA-256: " + shown(subject, _NAME)


def _what(file_name: str | None, origin: Origin | None) -> list[str]:
    """What the sample was to this alert: the file's name, or the process image or command-line
    target it was (`Process image: C:\\…`, `Run by rundll32.exe: C:\\…`)."""
    if origin is not None:
        return [f"{shown(origin.label, _LABEL)}: {shown(origin.path, _NAME)}"]
    return ["File: " + shown(file_name, _NAME)] if file_name else []


def render_verdict(
    verdict: Verdict,
    *,
    sample_key: str,
    subject: str,
    file_name: str | None,
    reused: bool,
    older: Verdict | None = None,
    origin: Origin | None = None,
) -> str:
    """`subject` is the SHA-256 or the URL; `reused` says the verdict came from an earlier analysis,
    and `older` is an analysis older than the resubmit age that found more; `origin` how the alert
    named the sample, when not as a file."""
    lines = [f"Joe Sandbox: {_headline(verdict)}"]
    if verdict.threat_names:
        lines.append("Threat: " + shown(", ".join(verdict.threat_names), _LIST))
    if verdict.classification:
        lines.append("Classification: " + shown(verdict.classification, _LIST))
    lines += _what(file_name, origin)
    lines.append(_subject_line(sample_key, subject))
    if verdict.systems:
        lines.append("Sandbox: " + shown(", ".join(verdict.systems), _LIST))
    if verdict.link:
        lines.append("Analysis: " + shown(verdict.link, _LINK))
    if reused:
        when = verdict.time.isoformat()[:10] if verdict.time is not None else ""
        lines.append(f"(Joe Sandbox had already analysed this sample{' on ' + when if when else ''}.)")
    if older is not None:
        when = f" on {older.time.isoformat()[:10]}" if older.time is not None else ""
        link = f": {shown(older.link, _LINK)}" if older.link else ""
        lines.append(f"(An older analysis{when} found it {_headline(older)}{link})")
    lines.append(marker(sample_key))
    return "\n".join(lines)


def _headline(verdict: Verdict) -> str:
    label = _DETECTION_LABEL.get(verdict.detection, shown(verdict.detection.upper(), 20))
    return f"{label} (score {verdict.score}/100)"


def render_failure(
    *, sample_key: str, subject: str | None, file_name: str | None, reason: str, origin: Origin | None = None
) -> str:
    """`subject` is None for a file known only by its path (not collected, so never hashed)."""
    lines = ["Joe Sandbox: not analysed", "Reason: " + shown(reason, _REASON)]
    lines += _what(file_name, origin)
    if subject is not None:
        lines.append(_subject_line(sample_key, subject))
    lines.append(marker(sample_key))
    return "\n".join(lines)


def job_comment(job: SampleJob, file_name: str | None, origin: Origin | None = None) -> str:
    """What a final job says, on an alert or an incident: its verdict, or why there is none.
    `file_name` is the name the alert gave the file (the job's first, when None); `origin` how the
    alert named the sample, when not as a file."""
    subject = job.sha256 or job.url  # None: a file known by its path only, never collected
    file_name = file_name or job.file_name
    if job.state == JobState.DONE and job.verdict is not None:
        return render_verdict(
            job.verdict,
            sample_key=job.key,
            subject=subject or job.key,
            file_name=file_name,
            reused=job.verdict_source == "lookup",
            older=job.older_verdict,
            origin=origin,
        )
    reason = job.failure.text if job.failure is not None else "unknown error"
    return render_failure(sample_key=job.key, subject=subject, file_name=file_name, reason=reason, origin=origin)
