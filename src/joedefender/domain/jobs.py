"""The persisted records of the workflow: alerts, sample jobs and the links between them.

Each record is a pydantic model stored as a versioned JSON document; a step loads one, changes
it, and saves it under optimistic concurrency.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AlertState(StrEnum):
    RECEIVED = "received"
    ACCEPTED = "accepted"
    SKIPPED = "skipped"
    FAILED = "failed"


class AlertRecord(_Record):
    alert_id: str
    machine_id: str | None = None
    source: str = "cli"
    received_at: float
    triaged_at: float | None = None
    state: AlertState = AlertState.RECEIVED
    reason: str = ""
    samples: list[str] = []  # sample job keys


class JobState(StrEnum):
    LOOKUP = "lookup"
    COLLECT = "collect"
    COLLECTING = "collecting"
    SUBMIT = "submit"
    ANALYSING = "analysing"
    DONE = "done"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED)


Strategy = Literal["getfile", "quarantine"]


class Candidate(_Record):
    """A machine that carries the file, as one alert's evidence says."""

    machine_id: str
    alert_id: str
    path: str | None = None
    file_name: str | None = None
    detection_source: str = ""
    detection_status: str | None = None
    threat_name: str | None = None


class Attempt(_Record):
    """One try to collect the file: which machine, which strategy, what Defender said."""

    number: int
    machine_id: str
    strategy: Strategy
    nonce: str
    action_id: str | None = None
    started_at: float
    ended_at: float | None = None
    outcome: str = "running"  # running | collected | failed
    detail: str = ""


class Submission(_Record):
    nonce: str
    submission_id: str | None = None
    submitted_at: float | None = None
    webid: str | None = None


class SampleJob(_Record):
    """One per distinct sample, shared by every alert and machine that carries it."""

    key: str
    kind: Literal["file", "url"]
    sha256: str | None = None
    url: str | None = None
    file_name: str | None = None
    state: JobState = JobState.LOOKUP
    created_at: float
    updated_at: float
    candidates: list[Candidate] = []
    attempts: list[Attempt] = []
    waiting_since: float | None = None  # when no candidate machine could be used
    submission: Submission | None = None
    verdict: dict[str, Any] | None = None  # a joedefender.clients.joe Verdict, as JSON
    verdict_source: Literal["lookup", "analysis"] | None = None
    failure: str | None = None
    poll_interval: float | None = None  # the current backoff, nominal seconds

    @property
    def current(self) -> Attempt | None:
        last = self.attempts[-1] if self.attempts else None
        return last if last is not None and last.outcome == "running" else None

    def add_candidate(self, candidate: Candidate) -> bool:
        for known in self.candidates:
            if known.machine_id == candidate.machine_id and known.alert_id == candidate.alert_id:
                return False
        self.candidates.append(candidate)
        return True


class LinkState(StrEnum):
    PENDING = "pending"
    WRITING = "writing"  # the comment may be on the alert: look before writing again
    COMMENTED = "commented"


class AlertSampleLink(_Record):
    """An (alert, sample) pair: the unit of write-back, one comment each."""

    alert_id: str
    sample_key: str
    state: LinkState = LinkState.PENDING
    commented_at: float | None = None


def link_key(alert_id: str, sample_key: str) -> str:
    return f"{sample_key}|{alert_id}"


class EndpointCleanup(_Record):
    """The second live response after a quarantine attempt: remove the job folder on the endpoint."""

    machine_id: str
    job_id: str  # the attempt's nonce, which named the folder
    created_at: float
    action_id: str | None = None
    tries: int = 0
    done: bool = False
