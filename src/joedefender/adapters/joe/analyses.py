"""Reading Joe's analysis objects: which search hits count, which one matters most, and the Verdict.

`analysis/search` is a free-text search (hashes, file names, comments, URLs), so a hit is kept
only when its own sha256 (or, for URL analyses, its `filename`) is the query's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from joedefender.domain.samples import InvalidSampleError, normalise_url
from joedefender.domain.verdicts import CONCLUSIVE_DETECTIONS, Detection, Verdict

_SEVERITY: dict[str, int] = {"malicious": 3, "suspicious": 2, "clean": 1}
_NO_THREAT = frozenset({"", "unknown"})
_OLDEST = datetime.min.replace(tzinfo=UTC)

Analysis = Mapping[str, Any]


def web_base(api_url: str) -> str:
    """The web UI's base for an API URL: Cloud `.../api` and on-premise `.../index.php/api` alike."""
    base = api_url.rstrip("/")
    return base.removesuffix("/api")


def analysis_link(api_url: str, webid: str) -> str:
    return f"{web_base(api_url)}/analysis/{webid}/0/html"


def detection_of(item: Analysis) -> Detection:
    value = str(item.get("detection") or "").strip().lower()
    for detection in CONCLUSIVE_DETECTIONS:
        if value == detection:
            return detection
    return "unknown"


def is_usable(item: Analysis) -> bool:
    """A finished, readable analysis with a real verdict; `unknown` and encrypted ones are not."""
    if not item.get("webid") or item.get("encrypted") is True:
        return False
    status = item.get("status")
    if status is not None and str(status).lower() != "finished":
        return False
    return detection_of(item) != "unknown"


def exact_sha256_matches(items: Iterable[Analysis], sha256: str) -> list[Analysis]:
    wanted = sha256.lower()
    return [item for item in items if str(item.get("sha256") or "").lower() == wanted]


def exact_url_matches(items: Iterable[Analysis], url: str) -> list[Analysis]:
    """URL analyses of the same URL as the core identifies URLs (`normalise_url`: scheme and host
    case, default port, fragment), so a lookup finds the analyses a sample job of that URL stands
    for, our own submissions (sent as the job's normalised URL) and other people's alike."""
    wanted = _url_identity(url)
    return [
        item
        for item in items
        if not item.get("sha256")
        and isinstance(item.get("filename"), str)
        and _url_identity(item["filename"]) == wanted
    ]


def _url_identity(url: str) -> str:
    # Joe's filename of a URL analysis is whatever its submitter typed, and a lookup may be asked
    # about something the core's rule refuses (not http or https): such a text matches only itself,
    # where the core's rule would raise.
    try:
        return normalise_url(url)
    except InvalidSampleError:
        return url.strip()


def most_relevant(items: Iterable[Analysis]) -> Analysis | None:
    """The most severe detection, then the highest score, then the newest."""
    return max(items, key=relevance, default=None)


def relevance(item: Analysis) -> tuple[int, int, datetime]:
    """A sort key: greater is more relevant."""
    return (_SEVERITY.get(detection_of(item), 0), _score(item), _time(item) or _OLDEST)


def to_verdict(item: Analysis, api_url: str) -> Verdict:
    webid = str(item["webid"])
    sha256 = str(item.get("sha256") or "").lower() or None
    filename = _text(item.get("filename"))
    return Verdict(
        detection=detection_of(item),
        score=_score(item),
        threat_names=_threat_names(item.get("threatname")),
        classification=_text(item.get("classification")) or "",
        systems=_systems(item),
        webid=webid,
        analysis_id=_text(item.get("analysisid")),
        sha256=sha256,
        url=filename if sha256 is None else None,
        filename=filename,
        time=_time(item),
        link=analysis_link(api_url, webid),
    )


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _score(item: Analysis) -> int:
    try:
        return int(item.get("score") or 0)
    except (TypeError, ValueError):
        return 0


def _time(item: Analysis) -> datetime | None:
    value = item.get("time")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _threat_names(value: object) -> tuple[str, ...]:
    if not isinstance(value, str):
        return ()
    names = (name.strip() for name in value.split(","))
    return tuple(dict.fromkeys(name for name in names if name.lower() not in _NO_THREAT))


def _systems(item: Analysis) -> tuple[str, ...]:
    runs = item.get("runs")
    names = [run.get("system") for run in runs if isinstance(run, dict)] if isinstance(runs, list) else []
    if not names and isinstance(item.get("systems"), list):
        names = list(item["systems"])
    return tuple(dict.fromkeys(str(name) for name in names if name))
