"""GetFile on the evidence path: the file where the alert saw it, if it is still there. On Linux
and macOS the path is `filePath` + `/` + `fileName`, joined without Windows rules."""

from __future__ import annotations

from typing import ClassVar

from joedefender.domain.jobs import Candidate
from joedefender.domain.liveresponse import Command
from joedefender.domain.platforms import Platform
from joedefender.pipeline.collection.strategy import CollectionStrategy, Reach, Target


class GetFile(CollectionStrategy):
    name: ClassVar[str] = "getfile"
    how: ClassVar[str] = "GetFile on the evidence path"
    reach: ClassVar[Reach] = Reach.ON_DISK
    platforms: ClassVar[frozenset[Platform]] = frozenset(Platform)
    by_path: ClassVar[bool] = True

    def applies(self, candidate: Candidate, platform: Platform) -> bool:
        return candidate.path_on(platform) is not None

    def commands(self, target: Target) -> list[Command]:
        path = target.candidate.path_on(target.platform)
        assert path is not None  # the plan tries it only where there is one
        return [Command.get_file(path)]
