"""Machines and live response actions as the core sees them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from joedefender.domain.platforms import Platform, PlatformDecision, decide_platform, platform_from_os


@dataclass(frozen=True, slots=True)
class Machine:
    id: str
    online: bool  # Defender reports the sensor active, so live response can reach it
    os_platform: str | None = None  # Defender's osPlatform, as it came (no documented list of values)
    agent_version: str | None = None  # the Defender agent's version, where Defender gives one

    @property
    def platform(self) -> Platform | None:
        """The platform osPlatform names; None when it names none we know (see `platform_for`)."""
        return platform_from_os(self.os_platform)

    def platform_for(self, evidence_path: str | None) -> PlatformDecision:
        """The platform to collect with, from osPlatform, else from the evidence path's form."""
        return decide_platform(self.os_platform, evidence_path)


@dataclass(frozen=True, slots=True)
class Command:
    """One live response command: fetch a file, or run a library script with arguments."""

    kind: Literal["GetFile", "RunScript"]
    target: str  # the path for GetFile, the library script's name for RunScript
    args: str | None = None

    @classmethod
    def get_file(cls, path: str) -> Command:
        return cls("GetFile", path)

    @classmethod
    def run_script(cls, name: str, args: str | None = None) -> Command:
        return cls("RunScript", name, args)


class ActionStatus(StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMEOUT = "TimeOut"
    CANCELLED = "Cancelled"

    @property
    def running(self) -> bool:
        return self in (ActionStatus.PENDING, ActionStatus.IN_PROGRESS)


@dataclass(frozen=True, slots=True)
class LiveResponseAction:
    """A live response machine action: its status, the comment it was requested with (which
    carries our nonce) and the errors its commands reported."""

    id: str
    status: ActionStatus
    comment: str = ""
    errors: tuple[str, ...] = ()

    def describe_failure(self) -> str:
        return "; ".join(self.errors) if self.errors else f"live response ended {self.status.value}"
