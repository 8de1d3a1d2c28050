"""The JSON the API and the inspection routes answer with, built from the emulator's state.

Field names and shapes follow joe-api.md §2.2 (submission) and §2.3 (analysis object).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.joe.state import Analysis, Submission

_SCRIPTS = {"file": "default.jbs", "url": "browseurl.jbs", "sample-url": "default.jbs"}


def iso(moment: datetime) -> str:
    """ISO-8601 with offset and whole seconds, as Joe writes `time` ("2019-04-15T08:05:05+00:00")."""
    return moment.replace(microsecond=0).isoformat()


def analysis(item: Analysis, clock: EmulatedClock, now: float) -> dict[str, Any]:
    """The analysis object: the verdict shows only once the analysis has finished."""
    status = item.status(now)
    finished = status == "finished"
    verdict = item.verdict
    detection = verdict.detection if finished else "unknown"
    score = verdict.score if finished else 0
    digests = item.digests
    return {
        "webid": item.webid,
        "analysisid": item.analysisid,
        "time": iso(clock.at(item.started)),
        "status": status,
        "detection": detection,
        "score": score,
        "threatname": verdict.threatname if finished else "",
        "classification": verdict.classification if finished else "",
        "md5": digests.md5 if digests else "",
        "sha1": digests.sha1 if digests else "",
        "sha256": digests.sha256 if digests else "",
        "filename": item.filename,
        "scriptname": _SCRIPTS[item.mode],
        "comments": item.comments,
        "tags": list(item.tags),
        "duration": round(item.analysis_seconds) if finished else 0,
        "encrypted": item.encrypted,
        "has_malwareconfig": False,
        "runs": [
            {
                "system": system,
                "detection": detection,
                "score": score,
                "error": None,
                "yara": False,
                "sigma": False,
                "snort": False,
            }
            for system in item.systems
        ],
    }


def submission(item: Submission, clock: EmulatedClock, now: float) -> dict[str, Any]:
    status = item.status(now)
    analyses = item.live_analyses()
    most_relevant = None
    if status == "finished" and analyses:
        best = max(analyses, key=lambda a: a.verdict.score)
        most_relevant = {
            "webid": best.webid,
            "detection": best.verdict.detection,
            "score": best.verdict.score,
        }
    return {
        "submission_id": item.submission_id,
        "name": item.request.name,
        "status": status,
        "time": iso(clock.at(item.created)),
        "most_relevant_analysis": most_relevant,
        "analyses": [analysis(a, clock, now) for a in analyses],
    }


def submission_summary(item: Submission, clock: EmulatedClock, now: float) -> dict[str, Any]:
    """A `submission/list` item (docs silent on its fields: the head of `submission/info`)."""
    return {
        "submission_id": item.submission_id,
        "name": item.request.name,
        "status": item.status(now),
        "time": iso(clock.at(item.created)),
    }


def inspect_submission(item: Submission, clock: EmulatedClock, now: float) -> dict[str, Any]:
    """What `/_emulator/submissions` shows: what was sent, as hashes, never the bytes."""
    request = item.request
    digests = item.digests
    webids = [a.webid for a in item.analyses]
    received = item.upload.received if item.upload is not None else (digests.size if digests else 0)
    return {
        "id": item.submission_id,
        "mode": request.mode,
        "chunked": request.chunked,
        "filename": request.name,
        "url": request.url,
        "sha256": digests.sha256 if digests else None,
        "sha1": digests.sha1 if digests else None,
        "md5": digests.md5 if digests else None,
        "size": digests.size if digests else None,
        "received": received,
        "params": {k: list(v) if isinstance(v, list) else v for k, v in request.params.items()},
        "tags": list(request.tags),
        "systems": list(request.systems),
        "comments": request.comments,
        "status": "uploading" if item.awaiting_chunks else item.status(now),
        "webid": webids[0] if webids else None,
        "webids": webids,
        "time": iso(clock.at(item.created)),
        "deleted": item.deleted,
    }


def inspect_analysis(item: Analysis, clock: EmulatedClock, now: float) -> dict[str, Any]:
    return {
        **analysis(item, clock, now),
        "mode": item.mode,
        "url": item.url,
        "known": item.known,
        "submission_id": item.submission_id,
        "deleted": item.deleted,
    }
