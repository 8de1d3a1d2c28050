"""How an alert named a sample, for the comment on that alert: what the analyst is told it was.

File and URL evidence name the sample itself (no origin). Process evidence names it in one of two
ways: as the image that ran (`Process image: C:\\Users\\…\\QuickUpdater.exe`), or as the file a
proxy-execution binary was told to run (`Run by rundll32.exe: C:\\ProgramData\\x.dll`). One sample
may have several origins, one per alert, so the origin belongs to the (alert, sample) link.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class OriginKind(StrEnum):
    PROCESS_IMAGE = "process_image"
    RUN_BY = "run_by"


class Origin(BaseModel):
    """`path` and `runner` came from Defender (the runner is a name of our proxy table, but may say
    which binary started it): shown escaped and bounded wherever they are shown."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: OriginKind
    path: str  # the image's path (or its name, when Defender gave no folder), or the target's path
    runner: str | None = None  # RUN_BY: the binary that was told to run it

    @property
    def label(self) -> str:
        """What the comment's line says before the path."""
        if self.kind is OriginKind.RUN_BY:
            return f"Run by {self.runner or 'a system binary'}"
        return "Process image"
