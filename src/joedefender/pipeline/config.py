"""The pipeline's knobs (`joedefender.bootstrap` derives them from the settings once at start).

Every duration here is nominal seconds; `joedefender.pipeline.clock.Clock` turns them into real
ones (the demo and the tests scale them down with the emulators' clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from joedefender.domain.indicators import IndicatorPolicy
from joedefender.domain.policy import ResubmitPolicy
from joedefender.domain.process_evidence import ProcessPolicy
from joedefender.domain.retry import RetryPolicy
from joedefender.domain.triage import AlertFilters

_MACHINE_RECHECK_FIRST = 60.0


@dataclass(frozen=True)
class PipelineConfig:
    filters: AlertFilters = field(default_factory=AlertFilters)
    process: ProcessPolicy = field(default_factory=ProcessPolicy)  # what Process evidence gives
    resubmit: ResubmitPolicy = field(default_factory=lambda: ResubmitPolicy("always"))
    analysis_timeout: float = 30 * 60.0
    machine_availability_timeout: float = 10 * 60.0
    machine_availability_retry: int = 5
    fetch_quarantined_files: bool = True
    allow_quarantine_restore: bool = False  # MpCmdRun -Restore takes entries out of quarantine: opt-in
    max_live_response_sessions: int = 20
    # mde-api.md section 7: POST runliveresponse 10 a minute; machineactions 100 a minute, of
    # which the polls of running actions take at most this many (the rest: lists, cancels).
    live_response_starts_per_minute: int = 10
    alert_batch_updates_per_minute: int = 10  # POST alerts/batchUpdate (and 500 an hour)
    action_polls_per_minute: int = 90
    max_sample_bytes: int = 3 * 1024**3
    indicators: IndicatorPolicy = field(default_factory=IndicatorPolicy)
    classify_alerts: bool = False  # malicious verdict: TruePositive / Malware, unless an analyst decided
    # Verdicts on the Defender XDR incident: our tag naming its worst verdict, a comment per sample.
    incident_tags: bool = False
    incident_comments: bool = False
    # A step that keeps failing: 15 s, doubling to 15 min, given up after 25 consecutive failures.
    step_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(max_retries=25, first=15.0, cap=900.0, jitter="none")
    )
    # Live response: JoeAz polls every 30 s and gives an action 600 s; RunScript itself times out
    # at 10 minutes (mde-api.md section 4).
    action_poll: float = 30.0
    action_timeout: float = 1800.0
    busy_retry: float = 30.0  # a machine another session holds, or our session cap reached
    # A work item's lease while its step runs, renewed every third of it: a dead instance's items
    # are free again within it (issue 22: taken over within 2 minutes).
    step_lease: float = 60.0

    @property
    def incident_verdicts(self) -> bool:
        return self.incident_tags or self.incident_comments

    @property
    def max_step_attempts(self) -> int:
        return self.step_retry.max_retries

    @property
    def machine_wait_limit(self) -> float:
        """How long to wait for a machine that carries the file to come online: JoeAz's
        MachineAvailabilityTimeout for each of MachineAvailabilityRetry tries."""
        return self.machine_availability_timeout * max(1, self.machine_availability_retry)

    def backoff(self, attempt: int) -> float:
        """The wait before running a failed step again, after `attempt` (1-based) failures."""
        return self.step_retry.ceiling(attempt)

    def machine_recheck(self, previous: float | None) -> float:
        """The next wait for machines that are offline: 60 s, doubling to the availability timeout."""
        if previous is None:
            return _MACHINE_RECHECK_FIRST
        return min(self.machine_availability_timeout, previous * 2)
