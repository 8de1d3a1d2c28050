"""When to look again at a job's analysis: `PollPlan` from its elapsed time and the shortest
recent analysis (Joe documents no request rate limit, so nothing else decides)."""

from __future__ import annotations

from joedefender.domain.jobs import SampleJob
from joedefender.pipeline.clock import Clock
from joedefender.pipeline.pacing import PollPlan


class AnalysisLooks:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._polls = PollPlan()

    def delay(self, job: SampleJob) -> float:
        """Nominal seconds until the next look at the job's analysis."""
        return self._polls.next_look(self._clock.since(_started(job)))

    def finished(self, job: SampleJob) -> None:
        """The job's analysis was seen finished."""
        self._polls.finished(self._clock.since(_started(job)))


def _started(job: SampleJob) -> float:
    assert job.submission is not None
    return job.submission.submitted_at or job.updated_at
