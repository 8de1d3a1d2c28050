"""A Windows command line split into arguments the way the program that receives it splits it.

A process gets its command line as one string (CreateProcess's `lpCommandLine`); each program
splits it itself, and Windows documents two rule sets that agree everywhere but in two places:

- **CRT**, the Microsoft C/C++ startup code ("Parsing C++ command-line arguments"; msvcrt since
  2008 and the UCRT);
- **SHELL32**, `CommandLineToArgvW` (shellapi.h), which .NET Framework and many Windows tools use.

What both say: arguments are separated by spaces and tabs (nothing else); a double quote starts
or ends a quoted part, in which spaces and tabs do not separate; 2n backslashes followed by a
quote give n backslashes and the quote starts or ends a quoted part; 2n+1 backslashes followed by
a quote give n backslashes and a literal quote; backslashes anywhere else are literal; a quoted
part left open runs to the end; the caret `^` is an ordinary character.

Where they differ:

1. A doubled quote inside a quoted part: the CRT gives a literal `"` and stays quoted
   (`a"b"" c d` is one argument, `ab" c d`); `CommandLineToArgvW` gives `"` and ends the quoted
   part (`ab"`, `c`, `d`: MicrosoftDocs/cpp-docs issue 3291 runs the documented example through it).
2. The program name (argv[0]) follows its own rule in both, backslashes always literal: the CRT
   lets quotes toggle anywhere in it and drops them; `CommandLineToArgvW` takes everything up to
   the next quote when the line starts with one, else everything up to the first space or tab,
   quotes included (`123\\"abc" d e` gives argv[0] `123\\"abc"`, cpp-docs issue 3697), and a line
   that starts with whitespace has an empty argv[0] (its documented remarks).

A third reading, **PLAIN** (quotes toggle, a backslash is always literal), is how cmd.exe treats
quotes, and the only reading under which Windows Script Host's own documented example
`cscript //logo c:\\"sample scripts"\\chart.vbs` names the script it runs.

Which reading a given program uses is not always documented, so the product reads every line all
three ways and takes a target only when the readings agree (see `proxy_targets`).

Every function here is one pass over the text, and a line longer than CreateProcess accepts
(32,767 UTF-16 units with the terminating NUL) is refused before it is read.
"""

from __future__ import annotations

from enum import StrEnum

# CreateProcess: "The maximum length of this string is 32,767 characters, including the Unicode
# terminating null character." Counted in UTF-16 code units, as Windows counts.
MAX_COMMAND_LINE = 32_767
_BLANKS = " \t"


class Dialect(StrEnum):
    CRT = "crt"
    SHELL32 = "CommandLineToArgvW"
    PLAIN = "plain"


READINGS: tuple[Dialect, ...] = (Dialect.CRT, Dialect.SHELL32, Dialect.PLAIN)


class CommandLineError(ValueError):
    """A command line that cannot be read with certainty. `ambiguous` when it can be read, but
    more than one way (the programs involved may disagree), rather than not at all."""

    def __init__(self, message: str, *, ambiguous: bool = False) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous


class CommandLineTooLong(CommandLineError):
    """Longer than any Windows command line can be; refused before it is read."""


def check_command_line(line: str) -> None:
    """Refuse what no Windows process can have as its command line."""
    if len(line) >= MAX_COMMAND_LINE or len(line) + _astral_count(line) >= MAX_COMMAND_LINE:
        raise CommandLineTooLong(f"longer than the {MAX_COMMAND_LINE:,} characters Windows allows")
    if "\0" in line:
        raise CommandLineError("contains a NUL character, where Windows ends a command line")
    if not line.strip(_BLANKS):
        raise CommandLineError("empty")


def _astral_count(line: str) -> int:
    """Characters that take two UTF-16 units (a surrogate pair) on Windows."""
    return sum(1 for ch in line if ord(ch) > 0xFFFF)


def split_command_line(line: str, dialect: Dialect = Dialect.CRT) -> tuple[str, ...]:
    """argv as a program reading `line` with `dialect`'s rules sees it: argv[0] is the program name."""
    check_command_line(line)
    name, end = program_name(line, dialect)
    return (name, *_arguments(line, end, dialect))


def program_name(line: str, dialect: Dialect) -> tuple[str, int]:
    """argv[0] and where the arguments begin."""
    if dialect is Dialect.SHELL32:
        if line.startswith('"'):
            close = line.find('"', 1)
            return (line[1:], len(line)) if close < 0 else (line[1:close], close + 1)
        end = 0
        while end < len(line) and line[end] not in _BLANKS:
            end += 1
        return line[:end], end
    # The UCRT's loop reads the first character unconditionally, then stops at a blank outside quotes.
    out: list[str] = []
    quoted = False
    index = 0
    while True:
        ch = line[index]
        if ch == '"':
            quoted = not quoted
        else:
            out.append(ch)
        index += 1
        if index >= len(line) or (not quoted and line[index] in _BLANKS):
            return "".join(out), index


def _arguments(line: str, index: int, dialect: Dialect) -> list[str]:
    args: list[str] = []
    size = len(line)
    while True:
        while index < size and line[index] in _BLANKS:
            index += 1
        if index >= size:
            return args
        arg, index = _one_argument(line, index, dialect)
        args.append(arg)


def _one_argument(line: str, index: int, dialect: Dialect) -> tuple[str, int]:
    out: list[str] = []
    quoted = False
    size = len(line)
    while index < size:
        ch = line[index]
        if ch == "\\" and dialect is not Dialect.PLAIN:
            run = index
            while run < size and line[run] == "\\":
                run += 1
            count = run - index
            if run < size and line[run] == '"':
                out.append("\\" * (count // 2))
                if count % 2:
                    out.append('"')
                    run += 1
            else:
                out.append("\\" * count)
            index = run
        elif ch == '"':
            if quoted and dialect is not Dialect.PLAIN and line.startswith('"', index + 1):
                out.append('"')
                quoted = dialect is Dialect.CRT
                index += 2
            else:
                quoted = not quoted
                index += 1
        elif ch in _BLANKS and not quoted:
            break
        else:
            out.append(ch)
            index += 1
    return "".join(out), index
