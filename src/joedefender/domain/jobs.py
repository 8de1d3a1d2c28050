"""The persisted records of the workflow: alerts, sample jobs and the links between them.

Each record is a pydantic model stored as a versioned JSON document; a step loads one, changes
it, and saves it under optimistic concurrency. A sample job moves between states only along
`TRANSITIONS`, through `SampleJob.move_to`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from joedefender.domain.alerts import Alert, Evidence
from joedefender.domain.errors import JoeDefenderError
from joedefender.domain.origins import Origin
from joedefender.domain.platforms import Platform, evidence_path
from joedefender.domain.proxy_targets import Target
from joedefender.domain.reasons import Cause
from joedefender.domain.verdicts import Verdict


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
    cause: Cause | None = None  # why it was skipped or failed
    summary: str = ""  # what triage accepted, e.g. "1 file(s), 0 URL(s)"
    samples: list[str] = []  # sample job keys
    incident_id: str | None = None  # its incident, when verdicts go on incidents
    # The alert as the poller listed it (with its evidence, without comments): triage works from
    # it instead of reading the alert again, and clears it.
    snapshot: Alert | None = None

    @property
    def reason(self) -> str:
        """What the analyst reads about this alert's triage."""
        return self.cause.text if self.cause is not None else self.summary


class JobState(StrEnum):
    LOOKUP = "lookup"
    COLLECT = "collect"
    COLLECTING = "collecting"
    RESOLVE = "resolve"  # a file named by its path, collected and hashed: hand it to its hash's job
    SUBMIT = "submit"
    ANALYSING = "analysing"
    DONE = "done"
    FAILED = "failed"
    RESOLVED = "resolved"  # the job of the file's hash carries its alerts on

    @property
    def final(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.RESOLVED)


_S = JobState

# The sample job's state machine: from each state, where it may go and why.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    #            known verdict reused | a file to collect | a URL, or a file collected by path, to submit | gave up
    _S.LOOKUP: frozenset({_S.DONE, _S.COLLECT, _S.SUBMIT, _S.FAILED}),
    #            an attempt started | no machine, no way, not allowed
    _S.COLLECT: frozenset({_S.COLLECTING, _S.FAILED}),
    #            attempt failed or withdrawn | file collected | a file named by its path hashed | gave up
    _S.COLLECTING: frozenset({_S.COLLECT, _S.SUBMIT, _S.RESOLVE, _S.FAILED}),
    #            the job of its hash took the alerts over | gave up
    _S.RESOLVE: frozenset({_S.RESOLVED, _S.FAILED}),
    #            submitted (or found by marker) | the collected file is gone: collect again | gave up
    _S.SUBMIT: frozenset({_S.ANALYSING, _S.COLLECT, _S.FAILED}),
    #            verdict read | timed out, no analysis, gave up
    _S.ANALYSING: frozenset({_S.DONE, _S.FAILED}),
    _S.DONE: frozenset(),
    #            reopened: an alert names a machine not tried yet
    _S.FAILED: frozenset({_S.COLLECT}),
    _S.RESOLVED: frozenset(),
}


class IllegalTransition(JoeDefenderError):
    def __init__(self, job: str, source: JobState, target: JobState) -> None:
        super().__init__(f"sample job {job}: {source.value} -> {target.value} is not a transition of the job table")


class Candidate(_Record):
    """A machine that carries the file, as one alert's evidence says."""

    machine_id: str
    alert_id: str
    path: str | None = None  # joined the Windows way; `path_on` joins for the device's platform
    file_name: str | None = None
    directory: str | None = None  # the evidence's filePath, as Defender gave it
    detection_source: str = ""
    detection_status: str | None = None
    threat_name: str | None = None

    @classmethod
    def sighted(cls, alert: Alert, evidence: Evidence) -> Candidate | None:
        """Where the alert saw the file (the evidence's own machine, else the alert's); None
        when neither names one."""
        machine_id = evidence.machine_id or alert.machine_id
        if not machine_id:
            return None
        return cls(
            machine_id=machine_id,
            alert_id=alert.id,
            path=evidence.path,
            file_name=evidence.file_name,
            directory=evidence.file_path,
            detection_source=alert.detection_source or "",
            detection_status=evidence.detection_status,
            threat_name=alert.threat_name,
        )

    @classmethod
    def named(cls, alert: Alert, target: Target) -> Candidate:
        """The machine whose process's command line named the file (`target`, on a named machine)."""
        assert target.machine_id is not None
        directory, _, name = target.path.rpartition("\\")
        return cls(
            machine_id=target.machine_id,
            alert_id=alert.id,
            path=target.path,
            file_name=name,
            directory=directory,
            detection_source=alert.detection_source or "",
            threat_name=alert.threat_name,
        )

    def path_on(self, platform: Platform) -> str | None:
        """The file's path on a device of `platform`; candidates stored before `directory` existed
        have only the Windows-joined path, which is right for Windows only."""
        if self.directory is None:
            return self.path if platform is Platform.WINDOWS else None
        return evidence_path(platform, self.directory, self.file_name)


class Device(_Record):
    """A candidate machine as collection took it, decided once per job from what Defender says of
    it: its platform (None: one live response does not reach), and why live response cannot be
    used there, if it cannot (`domain.platforms.live_response_blocker`)."""

    platform: Platform | None = None
    blocked: str | None = None


class Attempt(_Record):
    """One try to collect the file: which machine, which strategy, what Defender said."""

    number: int
    machine_id: str
    strategy: str  # the collection strategy's name (`joedefender.pipeline.collection.registry`)
    nonce: str
    action_id: str | None = None
    started_at: float
    ended_at: float | None = None
    outcome: Literal["running", "collected", "failed"] = "running"
    failure: Cause | None = None
    # A strategy may take several actions, each a stage of its own (the locate strategy: the
    # locator's listing, GetFile of the Entries files it listed, then GetFile of the ResourceData
    # files they name or, as a fallback, of the newest listed: listed_paths).
    stage: str | None = None
    fetch_paths: list[str] = []  # what the current stage's GetFile commands fetch
    listed_paths: list[str] = []
    delivered_index: int | None = None  # which fetched file held the sample
    fetch_started_at: float | None = None

    @property
    def action_started_at(self) -> float:
        """When the attempt's current action was asked for (its timeout counts from then)."""
        return self.fetch_started_at if self.fetch_started_at is not None else self.started_at


class Submission(_Record):
    nonce: str
    submission_id: str | None = None
    submitted_at: float | None = None
    webid: str | None = None


class SampleJob(_Record):
    """One per distinct sample, shared by every alert and machine that carries it.

    A `path` job is a file a command line named on one machine (`SampleKey.for_path`): it starts
    in `collect` (nothing to look up without a hash), learns its `sha256` from the collected bytes,
    and hands its alerts, and the collection, to the `file` job of that hash (`resolve`)."""

    key: str
    kind: Literal["file", "url", "path"]
    sha256: str | None = None
    url: str | None = None
    file_name: str | None = None
    state: JobState = JobState.LOOKUP
    created_at: float
    updated_at: float
    candidates: list[Candidate] = []
    devices: dict[str, Device] = {}  # by machine id: what each candidate machine was taken for
    # The Defender XDR incidents of the alerts that carry it (with verdicts on incidents): a job
    # that ends wakes their verdict step.
    incidents: list[str] = []
    attempts: list[Attempt] = []
    waiting_since: float | None = None  # when no candidate machine could be used
    submission: Submission | None = None
    verdict: Verdict | None = None
    verdict_source: Literal["lookup", "analysis"] | None = None
    older_verdict: Verdict | None = None  # a reused verdict's older, more severe analysis
    failure: Cause | None = None
    poll_interval: float | None = None  # the current backoff, nominal seconds

    def move_to(self, target: JobState) -> None:
        """Change state along the table; staying in the same state is not a transition."""
        if target == self.state:
            return
        if target not in TRANSITIONS[self.state]:
            raise IllegalTransition(self.key, self.state, target)
        _observe(self.state, target)
        self.state = target

    def platform_of(self, machine_id: str) -> Platform:
        """The platform a machine of the job is collected as (Windows for a machine not decided,
        as every machine was before platforms were told apart)."""
        device = self.devices.get(machine_id)
        return device.platform if device is not None and device.platform is not None else Platform.WINDOWS

    @property
    def subject(self) -> str:
        """What the job is about as the operator reads it: the file's hash, the URL, or for a file
        named by its path, that path (its hash, once known, is the subject of its own job)."""
        if self.kind == "path":
            return next((c.path for c in self.candidates if c.path), self.key)
        return self.sha256 or self.url or self.key

    @property
    def outcome(self) -> str:
        """What the operator reads about how the job ended: the verdict, or why it failed."""
        if self.state == JobState.RESOLVED:  # a file named by its path: the job of its hash carries on
            return f"the file is sha256:{self.sha256}"
        if self.verdict is not None:
            reused = " (known)" if self.verdict_source == "lookup" else ""
            return f"{self.verdict.detection} {self.verdict.score}{reused}"
        return self.failure.text if self.failure is not None else ""

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


_observers: list[_Observer] = []


class _Observer:
    def __init__(self) -> None:
        self.seen: set[tuple[JobState, JobState]] = set()


def observe_transitions() -> set[tuple[JobState, JobState]]:
    """A set that collects every transition taken from now on in this process (the tests use it
    to check that the suite exercises every row of the table)."""
    observer = _Observer()
    _observers.append(observer)
    return observer.seen


def _observe(source: JobState, target: JobState) -> None:
    for observer in _observers:
        observer.seen.add((source, target))


class LinkState(StrEnum):
    PENDING = "pending"
    WRITING = "writing"  # the comment may be on the alert: look before writing again
    COMMENTED = "commented"
    MOVED = "moved"  # a path job's link, handed to the job of the file's hash: no comment here

    @property
    def settled(self) -> bool:
        """Nothing is left to write for this link."""
        return self in (LinkState.COMMENTED, LinkState.MOVED)


class AlertSampleLink(_Record):
    """An (alert, sample) pair: the unit of write-back, one comment each."""

    alert_id: str
    sample_key: str
    state: LinkState = LinkState.PENDING
    origin: Origin | None = None  # how the alert named the sample (a process image, a command line)
    commented_at: float | None = None
    classified_at: float | None = None  # when the optional alert classification was settled
    # While `writing`: until when a write sent but not answered may still land on the alert (the
    # server may apply it after the client gave up); its comments are read back only after that.
    settles_at: float | None = None


class EndpointCleanup(_Record):
    """The live response after an attempt whose strategy leaves something on the endpoint: remove it."""

    machine_id: str
    job_id: str  # the attempt's nonce, which named the folder
    strategy: str = "quarantine"  # the collection strategy whose cleanup commands remove it
    created_at: float
    action_id: str | None = None
    tries: int = 0
    done: bool = False


class PushState(StrEnum):
    DUE = "due"  # the IOCs are still to be read and chosen
    READY = "ready"  # chosen; waiting for the tenant's next import batch
    IMPORTING = "importing"  # in a batch whose import may have happened: look before importing again
    DONE = "done"
    REFUSED = "refused"  # nothing pushed: tenant limit, or Defender refused the batch


class PushedValue(_Record):
    """One indicator of a push: what it is, and Defender's id once it is there."""

    type: str
    value: str
    id: str | None = None
    failure: str | None = None


class IndicatorPush(_Record):
    """The verdict actions of one sample job: the indicators chosen and where they stand."""

    sample_key: str
    state: PushState = PushState.DUE
    webid: str | None = None
    alert_id: str | None = None  # the alert the description names (the latest one)
    values: list[PushedValue] = []
    skipped: str = ""  # why other IOCs were left out, for the history and `status`
    batch: str | None = None  # the nonce of the import batch it is in
    expires_at: float | None = None  # what the current round asks Defender for
    rounds: int = 0
    updated_at: float = 0.0
    failure: str | None = None

    @property
    def ids(self) -> list[str]:
        return [v.id for v in self.values if v.id is not None]


class IndicatorBudget(_Record):
    """The tenant's indicator counters: the last count of active indicators (plus what we created
    since), and what this hour has pushed (for the per-hour cap)."""

    active: int = 0
    counted_at: float | None = None
    hour_start: float = 0.0
    pushed_this_hour: int = 0
