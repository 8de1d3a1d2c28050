"""Machines and live response actions as the core sees them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


@dataclass(frozen=True, slots=True)
class Machine:
    id: str
    online: bool  # Defender reports the sensor active, so live response can reach it


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
