"""The files a process's command line told a proxy-execution binary to run, or why there is none.

`rundll32.exe c:\\temp\\suspicious.dll,RepeatAfterMe`: the process image is Windows' own, the
payload is the DLL it was told to load. Given the image and the command line, `command_line_targets`
names that file as an absolute Windows path, the way the binary's documented rules find it
(`proxy_binaries`), or says why not: not a proxy binary, no file to run, a URL, a network path, a
relative path whose folder is unknown, an alternate data stream, the file is itself an OS binary,
or the line cannot be read, or can be read more than one way. The line is read with each of the
Windows argument rules (`command_line.READINGS`); when they name different files, none is taken.

`alert_targets` gathers an alert's processes: each target once (by path), at most
`MAX_TARGETS_PER_ALERT`, and stops reading processes once it has that many.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from joedefender.domain.command_line import (
    READINGS,
    CommandLineError,
    CommandLineTooLong,
    check_command_line,
    split_command_line,
)
from joedefender.domain.os_binaries import OsBinaryRules
from joedefender.domain.platforms import Platform
from joedefender.domain.proxy_binaries import ArgvReader, ProxyBinary, proxy_binary
from joedefender.domain.proxy_findings import Finding, Named, Nested, Nothing
from joedefender.domain.text import shown
from joedefender.domain.windows_paths import PathProblem, WindowsPath, WindowsPathError, ascii_upper, file_name

MAX_TARGETS_PER_ALERT = 4
# Files of one command line looked at (their paths parsed and checked); the rest are one reason. A
# 32 KiB line can name thousands of DLLs, and only the first few could be collected anyway.
MAX_FILES_PER_LINE = 8
MAX_DETAIL = 300  # characters of attacker text a reason keeps


class TargetReason(StrEnum):
    NOT_A_PROXY = "not_a_proxy"
    NO_FILE = "no_file"
    TOO_LONG = "too_long"
    UNPARSEABLE = "unparseable"
    AMBIGUOUS = "ambiguous"
    RELATIVE_PATH = "relative_path"
    UNC_PATH = "unc_path"
    URL = "url"
    STREAM = "alternate_data_stream"
    OS_BINARY = "os_binary"
    TOO_MANY = "too_many"

    @property
    def text(self) -> str:
        return _TEXT[self]


_TEXT: dict[TargetReason, str] = {
    TargetReason.NOT_A_PROXY: "{detail} is not a binary whose command line names a file it runs",
    TargetReason.NO_FILE: "no file to collect: {detail}",
    TargetReason.TOO_LONG: "the command line is {detail}",
    TargetReason.UNPARSEABLE: "the command line cannot be read: {detail}",
    TargetReason.AMBIGUOUS: "the command line can be read more than one way: {detail}",
    TargetReason.RELATIVE_PATH: "{detail} is a relative path and the folder it is relative to is not known",
    TargetReason.UNC_PATH: "{detail} is on a network share, not on the machine",
    TargetReason.URL: "{detail} is a URL, not a file on the machine",
    TargetReason.STREAM: "{detail} is an alternate data stream, which cannot be collected as a file",
    TargetReason.OS_BINARY: "{detail} is an operating-system file",
    TargetReason.TOO_MANY: "more than {max} command-line targets in one alert; not taken: {detail}",
}
_PATH_REASONS = {
    PathProblem.RELATIVE: TargetReason.RELATIVE_PATH,
    PathProblem.DRIVE_RELATIVE: TargetReason.RELATIVE_PATH,
    PathProblem.UNC: TargetReason.UNC_PATH,
    PathProblem.URL: TargetReason.URL,
    PathProblem.STREAM: TargetReason.STREAM,
}


@dataclass(frozen=True)
class Target:
    """A file to collect from the machine and analyse: `path` as Windows opens it, `runner` the
    binary, `machine_id` the machine the process ran on (as its `ProcessRun` says)."""

    path: str
    runner: str
    machine_id: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """One file: the same path on the same machine (Windows paths ignore ASCII case)."""
        return (self.machine_id or "").lower(), ascii_upper(self.path)


@dataclass(frozen=True)
class Skip:
    """Why a command line gave no target; `text` is safe to show (escaped and bounded)."""

    reason: TargetReason
    detail: str = ""

    @property
    def text(self) -> str:
        return self.reason.text.format(detail=shown(self.detail, MAX_DETAIL), max=MAX_TARGETS_PER_ALERT)


@dataclass(frozen=True)
class Targets:
    found: tuple[Target, ...] = ()
    skipped: tuple[Skip, ...] = ()


@dataclass(frozen=True)
class ProcessRun:
    """One process of an alert: its image (a path or a file name), its command line, the machine it
    ran on and, when known, its working directory (Defender's alert evidence does not carry it)."""

    image: str
    command_line: str
    working_directory: str | None = None
    machine_id: str | None = None


Outcome = tuple[Target | Skip, ...]


def command_line_targets(run: ProcessRun, os_rules: OsBinaryRules | None = None) -> Targets:
    """The files `run`'s command line told its image to run, and why any named file is not taken."""
    binary = proxy_binary(run.image)
    if binary is None:
        return Targets(skipped=(Skip(TargetReason.NOT_A_PROXY, _bounded(run.image)),))
    context = _Context(os_rules or OsBinaryRules.default(), _working_folder(run.working_directory))
    outcome = context.read(binary, run.command_line, via="")
    return Targets(
        tuple(item for item in outcome if isinstance(item, Target)),
        tuple(item for item in outcome if isinstance(item, Skip)),
    )


def alert_targets(runs: Iterable[ProcessRun], os_rules: OsBinaryRules | None = None) -> Targets:
    """Every target of an alert's processes, once each and at most `MAX_TARGETS_PER_ALERT`; processes
    that are not proxy binaries are left out of the reasons, as the ordinary case."""
    found: dict[tuple[str, str], Target] = {}
    skipped: list[Skip] = []
    pending = iter(runs)
    for run in pending:
        if len(found) >= MAX_TARGETS_PER_ALERT:
            unread = 1 + sum(1 for _ in pending)
            skipped.append(Skip(TargetReason.TOO_MANY, f"{unread} more process(es), not read"))
            break
        result = command_line_targets(run, os_rules)
        for target in (dataclasses.replace(t, machine_id=run.machine_id) for t in result.found):
            if target.key in found:
                continue
            if len(found) >= MAX_TARGETS_PER_ALERT:
                skipped.append(Skip(TargetReason.TOO_MANY, _bounded(target.path)))
            else:
                found[target.key] = target
        skipped.extend(skip for skip in result.skipped if skip.reason is not TargetReason.NOT_A_PROXY)
    return Targets(tuple(found.values()), tuple(skipped))


@dataclass(frozen=True)
class _Context:
    os_rules: OsBinaryRules
    working_folder: WindowsPath | None

    def read(self, binary: ProxyBinary, line: str, *, via: str) -> Outcome:
        """What `line` tells `binary` to run; `via` names the binary that started it (cmd), if any."""
        runner = f"{binary.name} (started by {via})" if via else binary.name
        try:
            check_command_line(line)
            if binary.read_line is not None:
                return self._resolve(binary.read_line(line), binary, runner)
        except CommandLineTooLong as exc:
            return (Skip(TargetReason.TOO_LONG, str(exc)),)
        except CommandLineError as exc:
            return (_unreadable(exc),)
        if binary.read is None:
            return ()
        # The readings must agree on the files to collect; where none names one, the first reading's
        # reasons stand (the readings may spell the same URL or command differently).
        outcomes = [
            self._reading(binary.read, split_command_line(line, dialect), binary, runner) for dialect in READINGS
        ]
        if len({_targets_of(outcome) for outcome in outcomes}) == 1:
            return outcomes[0]
        return (Skip(TargetReason.AMBIGUOUS, "the Windows argument rules name different files"),)

    def _reading(self, read: ArgvReader, argv: tuple[str, ...], binary: ProxyBinary, runner: str) -> Outcome:
        try:
            findings = read(argv[1:])
        except CommandLineError as exc:
            return (_unreadable(exc),)
        return self._resolve(findings, binary, runner)

    def _resolve(self, findings: list[Finding], binary: ProxyBinary, runner: str) -> Outcome:
        outcome: list[Target | Skip] = []
        named = 0
        for finding in findings:
            if isinstance(finding, Named):
                named += 1
                if named > MAX_FILES_PER_LINE:
                    continue
            if isinstance(finding, Nested):
                inner = proxy_binary(finding.binary)
                outcome.extend(self.read(inner, finding.line, via=binary.name) if inner else ())
            elif isinstance(finding, Nothing):
                outcome.append(Skip(TargetReason.NO_FILE, _bounded(f"{binary.name} {finding.why}")))
            else:
                outcome.append(self._named(finding, runner))
        if named > MAX_FILES_PER_LINE:
            unread = named - MAX_FILES_PER_LINE
            outcome.append(Skip(TargetReason.TOO_MANY, f"{unread} more file(s) named on one command line, not read"))
        return tuple(outcome)

    def _named(self, named: Named, runner: str) -> Target | Skip:
        try:
            path = WindowsPath.win32(named.text)
        except WindowsPathError as exc:
            if exc.problem is not PathProblem.RELATIVE or not named.cwd or self.working_folder is None:
                return _path_skip(exc)
            try:
                path = self.working_folder.join(named.text)
            except WindowsPathError as again:
                return _path_skip(again)
        if named.needs_extension and "." not in file_name(named.text):
            return Skip(TargetReason.AMBIGUOUS, f"{_bounded(named.text)}: {named.needs_extension}")
        if self.os_rules.match(path.text, Platform.WINDOWS) is not None:
            return Skip(TargetReason.OS_BINARY, _bounded(path.text))
        return Target(path.text, runner)


def _targets_of(outcome: Outcome) -> frozenset[Target]:
    return frozenset(item for item in outcome if isinstance(item, Target))


def _working_folder(text: str | None) -> WindowsPath | None:
    """The process's working directory as a folder to resolve against; None when unknown or unusable."""
    folder = (text or "").strip().rstrip("\\/")
    try:
        return WindowsPath.folder(folder) if folder else None
    except WindowsPathError:
        return None


def _path_skip(exc: WindowsPathError) -> Skip:
    reason = _PATH_REASONS.get(exc.problem)
    if reason is None:
        return Skip(TargetReason.UNPARSEABLE, f"{exc.problem.value} path {_bounded(exc.text)}")
    return Skip(reason, _bounded(exc.text))


def _unreadable(exc: CommandLineError) -> Skip:
    return Skip(TargetReason.AMBIGUOUS if exc.ambiguous else TargetReason.UNPARSEABLE, str(exc))


def _bounded(text: str) -> str:
    """Attacker text kept in a reason: one character past the limit, so `shown` marks the cut."""
    return text[: MAX_DETAIL + 1]
