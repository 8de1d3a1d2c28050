"""What reading a proxy binary's command line finds, before the paths are checked: a file it names,
another proxy binary it starts, or nothing to run (and why)."""

from __future__ import annotations

from dataclasses import dataclass

LOAD_LIBRARY = "LoadLibrary appends .dll to a name without an extension"
PATHEXT_SEARCH = "cmd tries each PATHEXT extension on a name without one"


@dataclass(frozen=True)
class Named:
    """A file named for the binary to run, as written. `cwd`: the binary's documented rules open a
    relative path from its working directory (else a relative path is refused); `needs_extension`:
    why a name without an extension is ambiguous for this binary."""

    text: str
    cwd: bool = False
    needs_extension: str = ""


@dataclass(frozen=True)
class Nested:
    """cmd starting another proxy binary: which one, and the command line it starts it with."""

    binary: str
    line: str


@dataclass(frozen=True)
class Nothing:
    """The command line runs no file (a URL has its own reason; this is for a command, a product
    code, standard input…): `why` says what it runs instead."""

    why: str


Finding = Named | Nested | Nothing
