"""The script powershell.exe (Windows PowerShell 5.1) or pwsh.exe (PowerShell 7) is told to run.

Both read argv (the Windows argument rules) with one switch table: a switch starts with `-`, `/`,
`--` or a typographic dash (U+2013 to U+2015), is matched without regard to case and may be shortened to any
prefix at least as long as its shortest form; the first entry that matches wins. The table is
PowerShell 7's own (`CommandLineParameterParser.cs`, `MatchSwitch`). Windows PowerShell 5.1's
parser is not public: we read its documented parameters (about_PowerShell_exe) with the same
shortest forms, and `-ep`/`-ec`, which it is widely seen to accept.

- `-File <path>` runs that file, the rest being its arguments; PowerShell 7 turns the path into a
  full path against the working directory before anything else runs (so do we), `-File -` reads
  standard input.
- `-Command <text…>` joins the remaining arguments with spaces and runs them as PowerShell. We take
  a script only when the text starts by running one: a bare path ending in `.ps1`, or `&` / `.`
  followed by a path in quotes. A relative path is refused there: profiles run first and may change
  the current location. Anything else (an inline script, `-EncodedCommand`) runs no file.
- What comes first without a switch is `-Command` for Windows PowerShell and `-File` for
  PowerShell 7 (about_Pwsh); an unknown switch starts the command in 5.1 and is taken as the file in 7.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from joedefender.domain.command_line import CommandLineError
from joedefender.domain.proxy_findings import Finding, Named, Nothing

_DASHES = frozenset("-\u2013\u2014\u2015")
_BAREWORD_STOP = frozenset(" \t;|")
_BAREWORD_SPECIAL = frozenset("$`'\"(){}@,&<>[]\u2018\u2019\u201a\u201b\u201c\u201d\u201e")
_QUOTED_SPECIAL = frozenset("[]\u2018\u2019\u201a\u201b\u201c\u201d\u201e")


class Kind(Enum):
    FLAG = "flag"
    VALUE = "takes a value"
    FILE = "file"
    COMMAND = "command"
    ENCODED = "encoded command"
    NOTHING = "help or version"


@dataclass(frozen=True)
class Switch:
    name: str
    shortest: str
    kind: Kind

    def matches(self, key: str) -> bool:
        return len(key) >= len(self.shortest) and self.name.startswith(key.lower())


def _table(*rows: tuple[str, str, Kind]) -> tuple[Switch, ...]:
    return tuple(Switch(name, shortest, kind) for name, shortest, kind in rows)


_F, _V, _N = Kind.FLAG, Kind.VALUE, Kind.NOTHING
PWSH_SWITCHES = _table(
    ("version", "v", _N), ("help", "h", _N), ("?", "?", _N), ("login", "l", _F), ("noexit", "noe", _F),
    ("noprofile", "nop", _F), ("nologo", "nol", _F), ("noninteractive", "noni", _F),
    ("socketservermode", "so", _F), ("servermode", "s", _F), ("namedpipeservermode", "nam", _F),
    ("sshservermode", "sshs", _F), ("interactive", "i", _F), ("configurationname", "config", _V),
    ("custompipename", "cus", _V), ("command", "c", Kind.COMMAND), ("windowstyle", "w", _V),
    ("file", "f", Kind.FILE), ("outputformat", "o", _V), ("of", "o", _V), ("inputformat", "inp", _V),
    ("if", "if", _V), ("executionpolicy", "ex", _V), ("ep", "ep", _V), ("encodedcommand", "e", Kind.ENCODED),
    ("ec", "e", Kind.ENCODED), ("encodedarguments", "encodeda", _V), ("ea", "ea", _V),
    ("settingsfile", "settings", _V), ("sta", "sta", _F), ("mta", "mta", _F), ("workingdirectory", "wo", _V),
    ("wd", "wd", _V), ("removeworkingdirectorytrailingcharacter", "removeworkingdirectorytrailingcharacter", _F),
)  # fmt: skip
WINDOWS_POWERSHELL_SWITCHES = _table(
    ("psconsolefile", "psc", _V), ("version", "v", _V), ("help", "h", _N), ("?", "?", _N),
    ("noexit", "noe", _F), ("noprofile", "nop", _F), ("nologo", "nol", _F), ("noninteractive", "noni", _F),
    ("configurationname", "config", _V), ("command", "c", Kind.COMMAND), ("windowstyle", "w", _V),
    ("file", "f", Kind.FILE), ("outputformat", "o", _V), ("inputformat", "i", _V), ("executionpolicy", "ex", _V),
    ("ep", "ep", _V), ("encodedcommand", "e", Kind.ENCODED), ("ec", "e", Kind.ENCODED), ("sta", "sta", _F),
    ("mta", "mta", _F),
)  # fmt: skip


def windows_powershell(args: Sequence[str]) -> list[Finding]:
    return _read(args, WINDOWS_POWERSHELL_SWITCHES, Kind.COMMAND)


def pwsh(args: Sequence[str]) -> list[Finding]:
    return _read(args, PWSH_SWITCHES, Kind.FILE)


def _read(args: Sequence[str], switches: tuple[Switch, ...], positional: Kind) -> list[Finding]:
    index = 0
    while index < len(args):
        key = _switch_key(args[index].strip())
        switch = next((s for s in switches if s.matches(key)), None) if key is not None else None
        if switch is None:
            return _run(positional, args, index)
        if switch.kind is Kind.NOTHING:
            return [Nothing("shows its help or version and runs nothing")]
        if switch.kind is Kind.ENCODED:
            return [Nothing("runs a Base64-encoded command, not a file")]
        if switch.kind in (Kind.FILE, Kind.COMMAND):
            return _run(switch.kind, args, index + 1)
        index += 2 if switch.kind is Kind.VALUE else 1
    return [Nothing("is told to run nothing")]


def _switch_key(token: str) -> str | None:
    if not token or (token[0] not in _DASHES and token[0] != "/"):
        return None
    key = token[1:]
    return key[1:] if key[:1] in _DASHES else key


def _run(kind: Kind, args: Sequence[str], index: int) -> list[Finding]:
    if index >= len(args):
        return [Nothing(f"is given no {kind.value}")]
    if args[index] == "-":
        return [Nothing("reads its commands from standard input")]
    if kind is Kind.FILE:
        return [Named(args[index], cwd=True)]
    return [script_of_command(" ".join(args[index:]))]


def script_of_command(text: str) -> Finding:
    """The script a PowerShell command starts by running, or why there is none."""
    command = text.strip(" \t")
    invoked = command[:1] in ("&", ".") and command[1:2] in (" ", "\t", "'", '"')
    if invoked:
        command = command[1:].lstrip(" \t")
    if command[:1] in ("'", '"'):
        if not invoked:
            return Nothing("is given a quoted string, which it prints rather than runs")
        path = _quoted(command)
    else:
        end = 0
        while end < len(command) and command[end] not in _BAREWORD_STOP:
            end += 1
        path = command[:end]
        if any(ch in _BAREWORD_SPECIAL for ch in path):
            raise CommandLineError(f"PowerShell would evaluate part of {path[:60]!r}")
    if not path.lower().endswith(".ps1"):
        return Nothing("runs a command, not a script file")
    return Named(path)


def _quoted(command: str) -> str:
    quote = command[0]
    close = command.find(quote, 1)
    if close < 0:
        raise CommandLineError("a quote PowerShell never closes")
    if command.startswith(quote, close + 1):
        raise CommandLineError("doubled quotes inside a quoted path")
    path = command[1:close]
    if any(ch in _QUOTED_SPECIAL for ch in path) or (quote == '"' and ("$" in path or "`" in path)):
        raise CommandLineError(f"PowerShell would expand or match part of {path[:60]!r}")
    return path
