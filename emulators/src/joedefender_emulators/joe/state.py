"""What the emulated sandbox holds: submissions, their analyses, and the analyses known before the run.

An analysis's status is computed from the emulated clock whenever it is asked for (submitted, then
running after `queue_seconds`, then finished after `analysis_seconds` more), so nothing runs in the
background. Samples are hashed as they arrive and never kept.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.joe import errors
from joedefender_emulators.joe.params import SubmissionRequest
from joedefender_emulators.scenario import JoeKnownAnalysis, JoeVerdict, Scenario

Status = Literal["submitted", "running", "finished"]
_DAY = 24 * 3600.0


@dataclass(frozen=True)
class Digests:
    sha256: str
    sha1: str
    md5: str
    size: int


class _Hasher:
    """The three digests Joe reports, fed piece by piece so no sample is ever held whole."""

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self._sha1 = hashlib.sha1(usedforsecurity=False)
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def update(self, data: bytes) -> None:
        self._sha256.update(data)
        self._sha1.update(data)
        self._md5.update(data)
        self.size += len(data)

    def digests(self) -> Digests:
        return Digests(self._sha256.hexdigest(), self._sha1.hexdigest(), self._md5.hexdigest(), self.size)


@dataclass(frozen=True)
class ChunkHeader:
    """What one `submission/chunked-sample` request declares about itself and the whole file."""

    file_size: int
    chunk_size: int
    chunk_count: int
    index: int
    size: int


@dataclass
class _Upload:
    """A chunked upload in progress; the totals are fixed by its first chunk."""

    totals: tuple[int, int, int] | None = None
    next_index: int = 1
    hasher: _Hasher = field(default_factory=_Hasher)
    last_chunk: tuple[int, str] | None = None
    complete: bool = False

    @property
    def received(self) -> int:
        return self.hasher.size


@dataclass
class Analysis:
    webid: str
    analysisid: str
    mode: Literal["file", "url", "sample-url"]
    started: float
    queue_seconds: float
    analysis_seconds: float
    filename: str
    url: str
    digests: Digests | None
    verdict: JoeVerdict
    systems: tuple[str, ...]
    comments: str
    tags: tuple[str, ...]
    encrypted: bool
    known: bool
    submission_id: str | None
    deleted: bool = False

    def status(self, now: float) -> Status:
        if self.known or now >= self.started + self.queue_seconds + self.analysis_seconds:
            return "finished"
        return "submitted" if now < self.started + self.queue_seconds else "running"


@dataclass
class Submission:
    submission_id: str
    request: SubmissionRequest
    created: float
    digests: Digests | None = None
    upload: _Upload | None = None
    analyses: list[Analysis] = field(default_factory=list)
    deleted: bool = False

    @property
    def awaiting_chunks(self) -> bool:
        return self.upload is not None and not self.upload.complete

    def live_analyses(self) -> list[Analysis]:
        return [a for a in self.analyses if not a.deleted]

    def status(self, now: float) -> Status:
        if self.awaiting_chunks:
            return "submitted"
        statuses = {a.status(now) for a in self.live_analyses()}
        # An empty sample spawns no analysis: the submission is finished with nothing to show.
        if statuses <= {"finished"}:
            return "finished"
        return "submitted" if statuses == {"submitted"} else "running"


def normalize_url(url: str) -> str:
    """Scheme and host are case-insensitive and an empty path is "/": the same URL matches either way."""
    text = url.strip()
    parts = urlsplit(text)
    if not parts.scheme or not parts.netloc:
        return text
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, parts.fragment))


class _Verdicts:
    """The scenario's verdicts by sha256 and by URL; anything else is clean."""

    def __init__(self, scenario: Scenario) -> None:
        self._by_sha256: dict[str, JoeVerdict] = {}
        self._by_url: dict[str, JoeVerdict] = {}
        for verdict in scenario.joe.verdicts:
            if verdict.url is not None:
                self._by_url.setdefault(normalize_url(verdict.url), verdict)
            else:
                self._by_sha256.setdefault(_verdict_sha256(verdict, scenario), verdict)

    def for_file(self, sha256: str) -> JoeVerdict:
        return self._by_sha256.get(sha256) or JoeVerdict(sha256=sha256)

    def for_url(self, url: str) -> JoeVerdict:
        return self._by_url.get(normalize_url(url)) or JoeVerdict(url=url)


def _verdict_sha256(verdict: JoeVerdict, scenario: Scenario) -> str:
    if verdict.sample is not None:
        return scenario.samples[verdict.sample].sha256
    assert verdict.sha256 is not None
    return verdict.sha256.lower()


class JoeState:
    """All submissions and analyses, behind one lock (the server answers on many threads)."""

    def __init__(self, scenario: Scenario, clock: EmulatedClock) -> None:
        self.lock = threading.RLock()
        self._joe = scenario.joe
        self._clock = clock
        self._verdicts = _Verdicts(scenario)
        self._submissions: dict[str, Submission] = {}
        self._analyses: dict[str, Analysis] = {}
        self._submission_ids = itertools.count(3_000_001)
        self._webids = itertools.count(1_000_001)
        self._analysisids = itertools.count(5_000_001)
        for known in scenario.joe.analyses:
            self._add_known(known, scenario)

    def now(self) -> float:
        return self._clock.elapsed()

    # --- submissions -------------------------------------------------------------------------

    def submit(self, request: SubmissionRequest, sample: bytes | None = None) -> Submission:
        """Record a submission (quota permitting) and start its analysis unless chunks must follow."""
        with self.lock:
            self._check_quota()
            submission = Submission(str(next(self._submission_ids)), request, self.now())
            self._submissions[submission.submission_id] = submission
            if request.chunked:
                # jbxapi sends no chunk at all for an empty file (joe-api.md §5); docs silent on what
                # the real server then does: here such a submission waits for chunks for good.
                submission.upload = _Upload()
            elif request.mode == "file":
                hasher = _Hasher()
                hasher.update(sample or b"")
                self._start(submission, hasher.digests())
            else:
                self._start(submission, None)
            return submission

    def receive_chunk(self, submission_id: str, header: ChunkHeader, data: bytes) -> Submission:
        """Take the next chunk in order; the analysis starts once the last one has arrived."""
        with self.lock:
            submission = self.submission(submission_id)
            upload = submission.upload
            if upload is None:
                raise errors.invalid("submission_id", f"submission {submission_id} takes no chunks")
            digest = hashlib.sha256(data).hexdigest()
            if upload.last_chunk == (header.index, digest):
                return submission  # jbxapi re-posts a chunk whose answer timed out: already taken
            if upload.complete:
                raise errors.invalid("submission_id", f"submission {submission_id} has all its chunks")
            _check_chunk(upload, header, len(data))
            upload.totals = (header.file_size, header.chunk_size, header.chunk_count)
            upload.hasher.update(data)
            upload.next_index += 1
            upload.last_chunk = (header.index, digest)
            if header.index == header.chunk_count:
                upload.complete = True
                self._start(submission, upload.hasher.digests())
            return submission

    def submission(self, submission_id: str) -> Submission:
        with self.lock:
            submission = self._submissions.get(submission_id.strip())
            if submission is None or submission.deleted:
                # docs silent: the code for an unknown id; 3 (invalid parameter) names the bad value.
                raise errors.joe_error(
                    errors.INVALID_PARAMETER, f"Unknown submission_id {submission_id}: no such submission."
                )
            return submission

    def delete_submission(self, submission_id: str) -> None:
        with self.lock:
            submission = self.submission(submission_id)
            submission.deleted = True
            for analysis in submission.analyses:
                analysis.deleted = True

    def submissions(self, *, include_deleted: bool = False) -> list[Submission]:
        with self.lock:
            return [s for s in self._submissions.values() if include_deleted or not s.deleted]

    # --- analyses ----------------------------------------------------------------------------

    def analysis(self, webid: str) -> Analysis:
        with self.lock:
            analysis = self._analyses.get(webid.strip())
            if analysis is None or analysis.deleted:
                # docs silent: as for submissions, an unknown webid is code 3.
                raise errors.joe_error(errors.INVALID_PARAMETER, f"Unknown webid {webid}: no such analysis.")
            return analysis

    def analysis_by_any_id(self, some_id: str) -> Analysis | None:
        """By webid or analysisid: web links in the wild use either (joe-api.md §1)."""
        with self.lock:
            for analysis in self._analyses.values():
                if some_id in (analysis.webid, analysis.analysisid) and not analysis.deleted:
                    return analysis
            return None

    def delete_analysis(self, webid: str) -> None:
        with self.lock:
            self.analysis(webid).deleted = True

    def analyses(self, *, include_deleted: bool = False) -> list[Analysis]:
        """Newest first, as the web UI lists them."""
        with self.lock:
            found = [a for a in self._analyses.values() if include_deleted or not a.deleted]
        return sorted(found, key=lambda a: (a.started, int(a.webid)), reverse=True)

    def search(self, query: str) -> list[Analysis]:
        """Substring match, ignoring case, on hashes, file name, URL and comments, or an exact id.

        Like the real search it also returns inexact matches (joe-api.md §2.3): callers filter.
        """
        needle = query.strip().lower()
        return [a for a in self.analyses() if _matches(a, needle)]

    def queue_size(self) -> int:
        now = self.now()
        return sum(1 for a in self.analyses() if a.status(now) == "submitted")

    # --- quota -------------------------------------------------------------------------------

    def quota(self) -> dict[str, dict[str, int]]:
        with self.lock:
            today = self._clock.now()
            created = [self._clock.at(s.created) for s in self._submissions.values()]
        daily = sum(1 for moment in created if moment.date() == today.date())
        monthly = sum(1 for moment in created if (moment.year, moment.month) == (today.year, today.month))
        return {
            "daily": _quota(daily, self._joe.quota_daily),
            "monthly": _quota(monthly, self._joe.quota_monthly),
        }

    def _check_quota(self) -> None:
        for period, numbers in self.quota().items():
            if numbers["remaining"] <= 0:
                raise errors.joe_error(
                    errors.QUOTA_EXCEEDED,
                    f"Quota exceeded: the {period} limit of {numbers['limit']} submissions is reached.",
                )

    # --- helpers -----------------------------------------------------------------------------

    def _start(self, submission: Submission, digests: Digests | None) -> None:
        request = submission.request
        submission.digests = digests
        if digests is not None and digests.size == 0:
            return  # an empty sample spawns no analysis (joe-api.md §2.2)
        if request.mode == "file":
            assert digests is not None
            verdict = self._verdicts.for_file(digests.sha256)
        else:
            verdict = self._verdicts.for_url(request.url)
        analysis = Analysis(
            webid=str(next(self._webids)),
            analysisid=str(next(self._analysisids)),
            mode=request.mode,
            started=self.now(),
            queue_seconds=self._joe.queue_seconds,
            analysis_seconds=self._joe.analysis_seconds,
            filename=request.name,
            url=request.url,
            digests=digests,
            verdict=verdict,
            systems=request.systems or tuple(verdict.systems),
            comments=request.comments,
            tags=request.tags,
            encrypted="encrypt-with-password" in request.params,
            known=False,
            submission_id=submission.submission_id,
        )
        submission.analyses.append(analysis)
        self._analyses[analysis.webid] = analysis

    def _add_known(self, known: JoeKnownAnalysis, scenario: Scenario) -> None:
        digests: Digests | None = None
        if known.url is not None:
            mode: Literal["file", "url"] = "url"
            filename = known.filename or known.url
        else:
            mode = "file"
            blob = (
                scenario.samples[known.sample]
                if known.sample is not None
                else scenario.sample_for_sha256(known.sha256 or "")
            )
            if blob is not None:
                digests = Digests(blob.sha256, blob.sha1, blob.md5, blob.size)
            else:
                digests = Digests((known.sha256 or "").lower(), "", "", 0)
            filename = known.filename or known.sample or digests.sha256
        analysis = Analysis(
            webid=str(next(self._webids)),
            analysisid=str(next(self._analysisids)),
            mode=mode,
            started=-known.age_days * _DAY,
            queue_seconds=0.0,
            analysis_seconds=self._joe.analysis_seconds,
            filename=filename,
            url=known.url or "",
            digests=digests,
            verdict=known,
            systems=tuple(known.systems),
            comments="",
            tags=(),
            encrypted=known.encrypted,
            known=True,
            submission_id=None,
        )
        self._analyses[analysis.webid] = analysis


def _check_chunk(upload: _Upload, header: ChunkHeader, length: int) -> None:
    totals = (header.file_size, header.chunk_size, header.chunk_count)
    if min(totals) < 1:
        raise errors.invalid("file-size", "file-size, chunk-size and chunk-count must be positive")
    if header.chunk_count != -(-header.file_size // header.chunk_size):
        raise errors.invalid("chunk-count", "does not match file-size and chunk-size")
    if upload.totals is not None and totals != upload.totals:
        raise errors.invalid("file-size", "file-size, chunk-size and chunk-count changed between chunks")
    if header.index != upload.next_index:
        raise errors.invalid("current-chunk-index", f"expected chunk {upload.next_index}")
    if header.size != length:
        raise errors.invalid("current-chunk-size", f"the chunk holds {length} bytes")
    last = header.file_size - (header.chunk_count - 1) * header.chunk_size
    expected = last if header.index == header.chunk_count else header.chunk_size
    if header.size != expected:
        raise errors.invalid("current-chunk-size", f"expected {expected} bytes for chunk {header.index}")


def _matches(analysis: Analysis, needle: str) -> bool:
    if needle in (analysis.webid, analysis.analysisid):
        return True
    digests = analysis.digests
    hashes = (digests.md5, digests.sha1, digests.sha256) if digests is not None else ()
    fields = (*hashes, analysis.filename, analysis.url, analysis.comments)
    return any(needle in text.lower() for text in fields if text)


def _quota(current: int, limit: int) -> dict[str, int]:
    return {"current": current, "limit": limit, "remaining": max(0, limit - current)}
