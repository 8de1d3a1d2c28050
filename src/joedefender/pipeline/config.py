"""The pipeline's knobs (`joedefender.bootstrap` derives them from the settings once at start)."""

from __future__ import annotations

from dataclasses import dataclass, field

from joedefender.domain.indicators import IndicatorPolicy
from joedefender.domain.policy import ResubmitPolicy
from joedefender.domain.retry import RetryPolicy
from joedefender.domain.triage import AlertFilters

# Nominal waits, in seconds, before `time_scale`. Live response: JoeAz polls every 30 s and
# gives an action 600 s; RunScript itself times out at 10 minutes (mde-api.md section 4).
_ACTION_POLL = 30.0
_ACTION_TIMEOUT = 1800.0
_ANALYSIS_POLL_FIRST = 30.0
_ANALYSIS_POLL_MAX = 300.0
_MACHINE_RECHECK_FIRST = 60.0
_BUSY_RETRY = 30.0
# A step's lease on its work item, renewed every third of it while the step runs: a dead
# instance's items are free again within it (issue 22: taken over within 2 minutes).
_STEP_LEASE = 60.0


@dataclass(frozen=True)
class PipelineConfig:
    """Every wait is nominal seconds times `time_scale` (1.0 in production; the demo and the tests
    run the emulators on a faster clock and scale the connector's waits to match)."""

    filters: AlertFilters = field(default_factory=AlertFilters)
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
    time_scale: float = 1.0
    indicators: IndicatorPolicy = field(default_factory=IndicatorPolicy)
    classify_alerts: bool = False  # malicious verdict: TruePositive / Malware, unless an analyst decided
    # A step that keeps failing: 15 s, doubling to 15 min, given up after 25 consecutive failures.
    step_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(max_retries=25, first=15.0, cap=900.0, jitter="none")
    )

    @property
    def max_step_attempts(self) -> int:
        return self.step_retry.max_retries

    def scaled(self, nominal_seconds: float) -> float:
        return nominal_seconds * self.time_scale

    @property
    def action_poll(self) -> float:
        return self.scaled(_ACTION_POLL)

    @property
    def action_timeout(self) -> float:
        return self.scaled(_ACTION_TIMEOUT)

    @property
    def busy_retry(self) -> float:
        return self.scaled(_BUSY_RETRY)

    @property
    def step_lease(self) -> float:
        return max(self.scaled(_STEP_LEASE), 2.0)

    @property
    def machine_wait_limit(self) -> float:
        """How long to wait for a machine that carries the file to come online: JoeAz's
        MachineAvailabilityTimeout for each of MachineAvailabilityRetry tries."""
        return self.scaled(self.machine_availability_timeout * max(1, self.machine_availability_retry))

    @property
    def analysis_limit(self) -> float:
        return self.scaled(self.analysis_timeout)

    def backoff(self, attempt: int) -> float:
        """The wait before running a failed step again, after `attempt` (1-based) failures, scaled."""
        return self.scaled(self.step_retry.ceiling(attempt))

    def analysis_poll(self, previous: float | None) -> float:
        """Nominal seconds until the next look at a running analysis: 30 s, growing to 5 min."""
        if previous is None:
            return _ANALYSIS_POLL_FIRST
        return min(_ANALYSIS_POLL_MAX, previous * 1.5)

    def machine_recheck(self, previous: float | None) -> float:
        if previous is None:
            return _MACHINE_RECHECK_FIRST
        return min(self.machine_availability_timeout, previous * 2)
