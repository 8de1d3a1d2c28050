"""GetFile on the evidence path: the file where the alert saw it, if it is still there."""

from __future__ import annotations

from typing import ClassVar

from joedefender.domain.jobs import Candidate
from joedefender.domain.liveresponse import Command
from joedefender.pipeline.collection.strategy import CollectionStrategy, Reach, Target


class GetFile(CollectionStrategy):
    name: ClassVar[str] = "getfile"
    how: ClassVar[str] = "GetFile on the evidence path"
    reach: ClassVar[Reach] = Reach.ON_DISK
    by_path: ClassVar[bool] = True

    def applies(self, candidate: Candidate) -> bool:
        return candidate.path is not None

    def commands(self, target: Target) -> list[Command]:
        assert target.candidate.path is not None
        return [Command.get_file(target.candidate.path)]
