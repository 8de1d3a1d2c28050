"""What Joe Sandbox concluded about a sample: the verdict, its IOCs, where a submission stands.

One typed verdict end to end: the sandbox adapter builds it, the job record stores it, the
comment and `status` read it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

Detection = Literal["clean", "suspicious", "malicious", "unknown"]

CONCLUSIVE_DETECTIONS: tuple[Detection, ...] = ("clean", "suspicious", "malicious")
_SEVERITY: dict[str, int] = {"malicious": 3, "suspicious": 2, "clean": 1, "unknown": 0}
_OLDEST = datetime.min.replace(tzinfo=UTC)


def detection_rank(detection: str) -> int:
    """Greater is worse: malicious, suspicious, clean, then unknown (no verdict)."""
    return _SEVERITY.get(detection, 0)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Verdict(_Frozen):
    """Joe's result for one analysis, with everything an alert comment and the indicators need."""

    detection: Detection
    score: int
    threat_names: tuple[str, ...] = ()
    classification: str = ""
    systems: tuple[str, ...] = ()
    webid: str
    analysis_id: str | None = None
    sha256: str | None = None
    url: str | None = None
    filename: str | None = None
    time: datetime | None = None
    link: str

    @property
    def conclusive(self) -> bool:
        """`unknown` (failed or empty analysis) is not a verdict to act on."""
        return self.detection in CONCLUSIVE_DETECTIONS

    @property
    def severity(self) -> tuple[int, int, datetime]:
        """A sort key, greater is more severe: the detection, then the score, then the newest."""
        return (detection_rank(self.detection), self.score, self.time or _OLDEST)


class Ioc(_Frozen):
    value: str
    malicious: bool = False


class IocSet(_Frozen):
    """The indicators of one analysis, each with Joe's own malicious flag."""

    file_hashes: tuple[Ioc, ...] = ()
    domains: tuple[Ioc, ...] = ()
    ips: tuple[Ioc, ...] = ()
    urls: tuple[Ioc, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.file_hashes or self.domains or self.ips or self.urls)


class SubmissionStatus(_Frozen):
    """Where a submission stands; `webid` is the most relevant analysis once it is finished."""

    submission_id: str
    status: str
    webid: str | None = None

    @property
    def finished(self) -> bool:
        return self.status == "finished"
