"""A live response machine action and its lifecycle, computed lazily from the emulated clock.

Nothing runs in the background: `advance(now)` replays whatever happened since the last look.
Commands take effect in order at their completion time, so a RunScript that writes a file is seen
by a later GetFile of the same action.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.mde.commands import CommandSpec
from joedefender_emulators.mde.common import format_time
from joedefender_emulators.mde.filesystem import EndpointFiles, FileContent
from joedefender_emulators.mde.library import Library
from joedefender_emulators.mde.platforms import PUTFILE_FOLDERS, PUTFILE_LIMITS
from joedefender_emulators.mde.scripts import CommandFailed, ScriptTimedOut, run_script
from joedefender_emulators.scenario import LiveResponseTimings, Machine

ACTIVE = ("Pending", "InProgress")
FINAL = ("Succeeded", "Failed", "TimeOut", "Cancelled")
# Where PutFile drops library files on Windows (docs: "a working folder", deleted on reboot).
PUTFILE_FOLDER = PUTFILE_FOLDERS["windows"]
MAX_GETFILE_BYTES = 3 * 1024**3


@dataclass(frozen=True)
class Endpoint:
    """Everything a command touches on one emulated machine."""

    machine: Machine
    files: EndpointFiles
    library: Library
    timings: LiveResponseTimings
    unsigned_scripts_allowed: bool


@dataclass(frozen=True)
class CommandResult:
    """What GetLiveResponseResultDownloadLink serves: GetFile bytes are gzipped, RunScript's JSON is not."""

    content: FileContent
    gzip: bool


@dataclass
class CommandRun:
    index: int
    spec: CommandSpec
    status: str = "Created"
    start: float | None = None
    end: float | None = None
    errors: list[str] = field(default_factory=list)
    result: CommandResult | None = None


@dataclass
class _Cancellation:
    requestor: str
    comment: str
    at: float


class MachineAction:
    def __init__(
        self,
        action_id: str,
        machine: Machine,
        *,
        requestor: str,
        comment: str,
        created: float,
        commands: tuple[CommandSpec, ...],
        holds_until: float | None = None,
    ) -> None:
        self.id = action_id
        self.machine = machine
        self.requestor = requestor
        self.comment = comment
        self.created = created
        self.commands = [CommandRun(i, spec) for i, spec in enumerate(commands)]
        self.status = "Pending"
        self.updated = created
        self._holds_until = holds_until
        self._cursor = created
        self._next = 0
        self._cancellation: _Cancellation | None = None
        if holds_until is not None:
            # A session someone else started before the run (the scenario's busy machine).
            self.status = "InProgress"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def from_portal(self) -> bool:
        """A session someone started from the portal: it holds the machine, the API does not list it."""
        return self._holds_until is not None

    def advance(self, now: float, endpoint: Endpoint) -> None:
        if not self.active:
            return
        if self._holds_until is not None:
            if now >= self._holds_until:
                self._finish("Succeeded", self._holds_until)
            return
        timings = endpoint.timings
        if self.status == "Pending" and not self._start(now, endpoint.machine, timings):
            return
        while self._next < len(self.commands):
            command = self.commands[self._next]
            command.start = self._cursor
            duration, limit = _duration(command.spec, endpoint)
            if duration > limit:
                if now < self._cursor + limit:
                    return
                # docs silent on the command's own status after a timeout: Failed, with a reason.
                command.status, command.end = "Failed", self._cursor + limit
                command.errors = [f"The command timed out after {limit:g} seconds."]
                self._finish("TimeOut", command.end)
                return
            end = self._cursor + duration
            if now < end:
                return
            timed_out = _execute(command, endpoint)
            command.end = self._cursor = self.updated = end
            if command.status == "Failed":
                self._finish("TimeOut" if timed_out else "Failed", end)
                return
            self._next += 1
        self._finish("Succeeded", self._cursor)

    def _start(self, now: float, machine: Machine, timings: LiveResponseTimings) -> bool:
        """Pending until the machine is online, then pending_seconds; True once InProgress."""
        deadline = self.created + timings.pending_expiry_seconds
        online_at = machine.next_online(self.created)
        start = None if online_at is None else online_at + timings.pending_seconds
        if start is None or start > deadline:
            if now >= deadline:
                self._finish("TimeOut", deadline)
            return False
        if now < start:
            return False
        # docs silent on a machine going offline mid-session: once started, the action runs on.
        self.status = "InProgress"
        self._cursor = self.updated = start
        return True

    def _finish(self, status: str, at: float) -> None:
        self.status = status
        self.updated = at

    def cancel(self, now: float, requestor: str, comment: str) -> None:
        self._cancellation = _Cancellation(requestor, comment, now)
        self._finish("Cancelled", now)

    def estimated_end(self, now: float, timings: LiveResponseTimings) -> float:
        """A guess for Retry-After: when this session will have freed its slot."""
        if self._holds_until is not None:
            return self._holds_until
        base = self._cursor if self.status == "InProgress" else now + timings.pending_seconds
        return max(now + 1.0, base + (len(self.commands) - self._next) * timings.command_seconds)

    def to_json(self, clock: EmulatedClock) -> dict[str, Any]:
        def stamp(elapsed: float | None) -> str | None:
            return None if elapsed is None else format_time(clock.at(elapsed))

        cancellation = self._cancellation
        updated = stamp(self.updated)
        return {
            "id": self.id,
            "type": "LiveResponse",
            "title": None,
            "scope": None,
            "requestor": self.requestor,
            "externalID": None,
            "requestSource": "PublicApi",
            "requestorComment": self.comment,
            "status": self.status,
            "machineId": self.machine.id,
            "computerDnsName": self.machine.computer_dns_name,
            "creationDateTimeUtc": stamp(self.created),
            # The entity page says lastUpdateDateTimeUtc, the list samples lastUpdateTimeUtc: send both.
            "lastUpdateDateTimeUtc": updated,
            "lastUpdateTimeUtc": updated,
            "cancellationRequestor": cancellation.requestor if cancellation else None,
            "cancellationComment": cancellation.comment if cancellation else None,
            "cancellationDateTimeUtc": stamp(cancellation.at) if cancellation else None,
            "errorHResult": 0,
            "relatedFileInfo": None,
            "troubleshootInfo": None,
            "commands": [
                {
                    "index": c.index,
                    "startTime": stamp(c.start),
                    "endTime": stamp(c.end),
                    "commandStatus": c.status,
                    "errors": list(c.errors),
                    "command": c.spec.to_json(),
                }
                for c in self.commands
            ],
        }


def _duration(spec: CommandSpec, endpoint: Endpoint) -> tuple[float, float]:
    """(how long the command takes, how long it may take) in emulated seconds."""
    timings = endpoint.timings
    if spec.type == "RunScript":
        return timings.command_seconds, timings.runscript_timeout_seconds
    if spec.type == "GetFile":
        stored = endpoint.files.lookup(spec.param("Path"))
        size = stored.content.size if stored is not None else 0
        rate = timings.getfile_bytes_per_second
        return timings.command_seconds + (size / rate if rate > 0 else 0.0), timings.getfile_timeout_seconds
    return timings.command_seconds, math.inf


def _execute(command: CommandRun, endpoint: Endpoint) -> bool:
    """Carry out a command at its completion time: sets its status, errors and result; True when
    live response stopped it at its timeout."""
    try:
        command.result = _effect(command.spec, endpoint)
    except CommandFailed as exc:
        command.status, command.errors = "Failed", [str(exc)]
        return isinstance(exc, ScriptTimedOut)
    command.status = "Completed"
    return False


def _effect(spec: CommandSpec, endpoint: Endpoint) -> CommandResult | None:
    if spec.type == "PutFile":
        name = spec.param("FileName")
        entry = endpoint.library.get(name)
        if entry is None:
            raise CommandFailed(f"File '{name}' was not found in the live response library.")
        os_name = endpoint.files.os
        if len(entry.content) > PUTFILE_LIMITS[os_name]:
            megabytes = PUTFILE_LIMITS[os_name] // (1024 * 1024)
            raise CommandFailed(
                f"File '{entry.file_name}' is larger than the {megabytes} MB PutFile limit of this platform."
            )
        separator = "\\" if os_name == "windows" else "/"
        endpoint.files.write(f"{PUTFILE_FOLDERS[os_name]}{separator}{entry.file_name}", FileContent(data=entry.content))
        return None  # PutFile has no result (run-live-response.md)
    if spec.type == "RunScript":
        result = run_script(
            spec.param("ScriptName"),
            spec.param("Args"),
            endpoint.library,
            endpoint.files,
            endpoint.unsigned_scripts_allowed,
            endpoint.timings.script_real_seconds,
        )
        return CommandResult(FileContent(data=result.to_bytes()), gzip=False)
    path = spec.param("Path")
    stored = endpoint.files.lookup(path)
    if stored is None:
        raise CommandFailed(f"File '{path}' was not found on the device.")
    if endpoint.files.is_quarantine(path) and not endpoint.files.quarantine_getfile:
        raise CommandFailed(f"Access to the path '{path}' is denied.")
    if stored.kind != "file":
        # getfile does not take reparse points (a symbolic link on Linux and macOS) nor sparse
        # files (live-response-command-examples.md); the docs are silent on the error text.
        what = "a symbolic link or reparse point" if stored.kind == "link" else "a sparse file"
        raise CommandFailed(f"File '{path}' is {what}: live response does not collect it.")
    if stored.content.size == 0:
        # getfile does not take empty files (nor reparse points, sparse or virtual files):
        # live-response-command-examples.md, via defender-quarantine.md section 7. The docs are
        # silent on the error text; the command fails like any other refused getfile.
        raise CommandFailed(f"File '{path}' is empty: live response does not collect empty files.")
    if stored.content.size > MAX_GETFILE_BYTES:
        raise CommandFailed(f"File '{path}' is larger than the 3 GB GetFile limit.")
    return CommandResult(stored.content, gzip=True)
