"""What a sample job's handler returns: an `Outcome` for its work item, or what comes next in
the same step, which `job.SampleWork` carries out (so no handler calls another)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from joedefender.domain.jobs import SampleJob
from joedefender.pipeline.collection.staging import SampleStaging
from joedefender.pipeline.context import Outcome
from joedefender.pipeline.records import Versioned


@dataclass(frozen=True)
class Proceed:
    """The job moved to another state: run that state's handler now, in this step (in an
    outbreak, back in the queue it would wait behind every alert still waiting for triage)."""


@dataclass(frozen=True)
class Staged:
    """The collected file, verified and recorded, open in staging: submit it now."""

    staging: SampleStaging
    file_name: str


@dataclass(frozen=True)
class Refetch:
    """A collected file must be submitted (again): fetch it anew from its action's results."""


Result = Outcome | Proceed | Staged | Refetch


class Handler(Protocol):
    def advance(self, stored: Versioned[SampleJob]) -> Result:
        """One bounded piece of the job's work in its current state."""
        ...
