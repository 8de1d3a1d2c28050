"""The one interface every way of collecting a file implements.

A strategy says where it applies (the platforms it runs on, detection sources, the settings that
opt it in, and its own condition on the evidence and the device's platform), how far it reaches
(the plan tries what is on disk first, the quarantine next and a restore last, the quarantine
first when the evidence says the file was quarantined), the library scripts it needs, the live
response commands of each of its stages, what follows when a stage's action ends (another stage,
the sample, or a failure), how the fetched files become the sample's bytes, and the cleanup it
leaves on the endpoint.

Adding one is a module of its own and a line in `registry.STRATEGIES`: nothing else branches on
a strategy's name. Strategies hold no state; the attempt (`domain.jobs.Attempt`) carries what a
stage learnt for the next one.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Protocol

from joedefender.domain.jobs import Attempt, Candidate, SampleJob
from joedefender.domain.liveresponse import ActionStatus, Command, LiveResponseAction
from joedefender.domain.platforms import Platform
from joedefender.domain.reasons import Cause, Reason
from joedefender.endpoint import contract
from joedefender.pipeline.config import PipelineConfig

# A fetched file may exceed the sample by this much: a quarantine entry's ResourceData file is
# the payload plus a security descriptor, stream headers and small streams.
FETCH_OVERHEAD = 1 << 20
_OPT_IN_FLAGS = frozenset(f.name for f in dataclasses.fields(PipelineConfig) if f.type in (bool, "bool"))


class Reach(IntEnum):
    """Where a strategy looks for the file, which orders the plan."""

    ON_DISK = 1  # where the evidence says the file is
    QUARANTINE = 2  # Defender's quarantine, leaving it as it is
    RESTORE = 3  # takes the entry out of the quarantine: opt-in, and always last


@dataclass(frozen=True)
class LibraryScript:
    """A script a strategy runs, as it is uploaded to the live response library."""

    name: str
    description: str
    parameters: str

    def content(self) -> bytes:
        return contract.script_bytes(self.name)


@dataclass(frozen=True)
class Target:
    """What an attempt is after: the job's sample, the machine's sighting of it, the attempt, and
    the platform of the machine (`pipeline.collection.devices`)."""

    job: SampleJob
    candidate: Candidate
    attempt: Attempt
    max_sample_bytes: int
    platform: Platform = Platform.WINDOWS


class ActionResults(Protocol):
    """What an ended action left to read: its scripts' output and the files it fetched."""

    def script_output(self, index: int) -> str:
        """What RunScript command `index` printed (`NotFound` when it printed nothing)."""
        ...

    def stream(self, index: int, *, max_bytes: int) -> AbstractContextManager[Iterator[bytes]]:
        """The file GetFile command `index` fetched, as chunks."""
        ...


@dataclass(frozen=True)
class NextStage:
    """Run another action: GetFile of `paths`, as stage `stage`."""

    stage: str
    paths: list[str]
    note: tuple[str, str]  # the history line: outcome, detail
    listed: list[str] | None = None  # paths a later stage may fall back on


@dataclass(frozen=True)
class Deliver:
    """The sample is among the files the action fetched (`CollectionStrategy.sample_results`)."""


@dataclass(frozen=True)
class Failed:
    cause: Cause


AfterAction = NextStage | Deliver | Failed


class CollectionStrategy(ABC):
    name: ClassVar[str]  # kept on the attempt, named in the history and the action's comment
    how: ClassVar[str]  # the history's account of how the file was obtained
    reach: ClassVar[Reach]
    platforms: ClassVar[frozenset[Platform]] = frozenset({Platform.WINDOWS})  # unless a strategy says
    detection_sources: ClassVar[frozenset[str] | None] = None  # lower case; None: any
    opt_in: ClassVar[tuple[str, ...]] = ()  # `PipelineConfig` flags that must all be on
    scripts: ClassVar[tuple[LibraryScript, ...]] = ()
    first_stage: ClassVar[str | None] = None
    # Whether it fetches whatever is at the candidate's path: only such a strategy can collect a
    # file whose hash is not known yet (a command line named it); the others recognise it by its hash.
    by_path: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        unknown = set(cls.opt_in) - _OPT_IN_FLAGS
        if unknown:
            raise TypeError(f"{cls.__name__}.opt_in names no PipelineConfig flag: {sorted(unknown)}")

    def usable(self, candidate: Candidate, platform: Platform, config: PipelineConfig) -> bool:
        """Whether the plan may try this strategy on the candidate's machine, of `platform`."""
        return self.opted_in(config) and self.fits(candidate, platform)

    def opted_in(self, config: PipelineConfig) -> bool:
        return all(getattr(config, flag) for flag in self.opt_in)

    def fits(self, candidate: Candidate, platform: Platform) -> bool:
        """Whether the strategy would apply on the candidate's machine, settings apart."""
        source = candidate.detection_source.lower()
        return (
            platform in self.platforms
            and (self.detection_sources is None or source in self.detection_sources)
            and self.applies(candidate, platform)
        )

    def applies(self, candidate: Candidate, platform: Platform) -> bool:
        """The strategy's own condition on the evidence (a path to fetch on that platform, say)."""
        return True

    def held_back(self, candidate: Candidate, platform: Platform, config: PipelineConfig) -> Reason | None:
        """Why a job that gave up could not use this strategy on the candidate's machine when a
        setting alone kept it out, for the failure comment to say how to allow it; None: nothing
        worth saying (by default)."""
        return None

    @abstractmethod
    def commands(self, target: Target) -> list[Command]:
        """The live response commands of the attempt's current stage."""

    def after(self, action: LiveResponseAction, results: ActionResults, target: Target) -> AfterAction:
        """What follows once the stage's action ended: by default the sample, if it succeeded."""
        if action.status != ActionStatus.SUCCEEDED:
            return Failed(Cause(reason=Reason.ACTION_FAILED, detail=action.describe_failure()))
        return Deliver()

    def sample_results(self, attempt: Attempt) -> list[int]:
        """The GetFile results that may hold the sample, in the order to try them."""
        return [0]

    def plain(self, chunks: Iterator[bytes], max_bytes: int) -> Iterator[bytes]:
        """The sample's bytes from a fetched file."""
        return chunks

    def mismatch(self, sha256: str) -> Cause | None:
        """Why the attempt failed when a fetched file hashes to `sha256`, not to the evidence's;
        None: such a file was only not the one sought."""
        return Cause(reason=Reason.HASH_MISMATCH, detail=sha256)

    def cleanup(self, job_id: str) -> list[Command]:
        """The commands that remove what an attempt left on the endpoint; none by default."""
        return []

    def stage_label(self, attempt: Attempt) -> str:
        """How the history and the action's comment name the attempt's current stage."""
        later = attempt.stage is not None and attempt.stage != self.first_stage
        return f"{self.name}, {attempt.stage}" if later else self.name
