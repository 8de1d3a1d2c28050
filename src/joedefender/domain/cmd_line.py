"""What cmd.exe runs when it is started with `/c` or `/k`: cmd's own rules, from `cmd /?`.

cmd does not split its command line into argv. It reads its switches up to `/C` or `/K` (`/R` is
an undocumented synonym of `/C`), and what follows is the command it runs, after this quote rule
(`cmd /?`, quoted):

    1. If all of the following conditions are met, then quote characters on the command line are
       preserved: no /S switch; exactly two quote characters; no special characters between the
       two quote characters, where special is one of: &<>()@^|; there are one or more whitespace
       characters between the two quote characters; the string between the two quote characters
       is the name of an executable file.
    2. Otherwise, old behavior is to see if the first character is a quote character and if so,
       strip the leading character and remove the last quote character on the command line,
       preserving any text after the last quote character.

Whether the quoted string names an executable file depends on the disk. We take rule 1 when it
ends in an extension of the default PATHEXT: if that file is there, rule 1 is what cmd did; if
not, the file we would collect is not there either and collection says so. Otherwise the line is
ambiguous.

Then cmd parses the command: `%VAR%` (and `!VAR!` with `/V:ON`) are expanded first, so a line with
`%` is refused (we cannot know the variables); outside quotes a caret escapes the next character
and `& | < > ( )` are operators; a quote starts or ends a quoted part (no escapes inside). The
first command's program ends at a blank or one of cmd's other delimiters `, ; =`. `^"` is refused:
it is a literal quote to cmd but a quote to the program cmd starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from joedefender.domain.command_line import CommandLineError, Dialect, check_command_line, program_name

RULE_ONE_SPECIAL = frozenset("&<>()@^|")
DEFAULT_PATHEXT = (".com", ".exe", ".bat", ".cmd", ".vbs", ".vbe", ".js", ".jse", ".wsf", ".wsh", ".msc")
_BLANKS = " \t"
_DELIMITERS = " \t,;="
_OPERATORS = frozenset("&|<>")
_VALUED_SWITCHES = frozenset("tefv")  # /T:fg /E:ON /F:OFF /V:ON
_PLAIN_SWITCHES = frozenset("qdausxy")
BUILT_INS = frozenset(
    (
        "assoc", "break", "call", "cd", "chdir", "cls", "color", "copy", "date", "del", "dir", "echo", "endlocal",
        "erase", "exit", "for", "ftype", "goto", "if", "md", "mkdir", "mklink", "move", "path", "pause", "popd",
        "prompt", "pushd", "rd", "rem", "ren", "rename", "rmdir", "set", "setlocal", "shift", "start", "time",
        "title", "type", "ver", "verify", "vol",
    )
)  # fmt: skip


@dataclass(frozen=True)
class CmdCommand:
    """The first command cmd runs: `program` as cmd reads it, `line` the command line it starts it with."""

    program: str
    line: str


def cmd_command(line: str) -> CmdCommand | None:
    """The first command of `cmd … /c <command>`, None when cmd is told to run nothing."""
    check_command_line(line)
    text, strip, delayed = _after_switches(line)
    if text is None:
        return None
    text = _quote_rule(text.lstrip(_BLANKS), strip=strip)
    if "%" in text:
        raise CommandLineError("cmd expands %variables% we cannot know")
    if delayed and "!" in text:
        raise CommandLineError("cmd expands !variables! we cannot know (/V:ON)")
    command = _first_command(text).lstrip(_DELIMITERS + "@")
    if not command:
        return None
    return CmdCommand(_program(command), command)


def _after_switches(line: str) -> tuple[str | None, bool, bool]:
    """The text after /C or /K (None without either), whether /S was given, whether /V:ON was."""
    _, index = program_name(line, Dialect.SHELL32)
    strip = delayed = False
    size = len(line)
    while True:
        while index < size and line[index] in _BLANKS:
            index += 1
        if index >= size:
            return None, strip, delayed
        if line[index] != "/" or index + 1 >= size:
            raise CommandLineError(f"cmd reads {line[index : index + 20]!r} before any /c or /k")
        letter = line[index + 1].lower()
        if letter in "ckr":
            return line[index + 2 :], strip, delayed
        end = index + 2
        if letter in _VALUED_SWITCHES and line.startswith(":", end):
            while end < size and line[end] not in _BLANKS and line[end] != "/":
                end += 1
            delayed = delayed or (letter == "v" and line[index + 3 : end].lower() == "on")
        elif letter not in _PLAIN_SWITCHES or (end < size and line[end] not in _BLANKS and line[end] != "/"):
            raise CommandLineError(f"unknown cmd switch {line[index : index + 10]!r}")
        strip = strip or letter == "s"
        index = end


def _quote_rule(text: str, *, strip: bool) -> str:
    if not text.startswith('"'):
        return text  # both rules leave the text as it is
    last = text.rfind('"')
    if not strip and last > 0 and text.count('"') == 2:
        inside = text[1:last]
        if any(ch in _BLANKS for ch in inside) and not any(ch in RULE_ONE_SPECIAL for ch in inside):
            if inside.lower().endswith(DEFAULT_PATHEXT):
                return text  # rule 1: the quotes stay
            raise CommandLineError("cmd keeps or strips these quotes depending on the disk", ambiguous=True)
    if last == 0:
        return text[1:]
    return text[1:last] + text[last + 1 :]


def _first_command(text: str) -> str:
    """The text up to the first operator outside quotes, carets removed outside quotes."""
    out: list[str] = []
    quoted = False
    index = 0
    while index < len(text):
        ch = text[index]
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "^":
            index += 1
            if index >= len(text):
                raise CommandLineError("ends in a caret, which continues the command on a line we do not have")
            ch = text[index]
            if ch == '"':
                raise CommandLineError('^" is a literal quote to cmd but a quote to the program', ambiguous=True)
        elif not quoted and ch in _OPERATORS:
            break
        elif not quoted and ch in "()":
            raise CommandLineError("a parenthesised block")
        out.append(ch)
        index += 1
    return "".join(out)


def _program(command: str) -> str:
    if command.startswith('"'):
        close = command.find('"', 1)
        if close < 0:
            raise CommandLineError("the program's quotes are not closed")
        if close + 1 < len(command) and command[close + 1] not in _DELIMITERS:
            raise CommandLineError("text right after the program's closing quote")
        return command[1:close]
    end = 0
    while end < len(command) and command[end] not in _DELIMITERS:
        end += 1
    program = command[:end]
    if '"' in program or "/" in program:
        raise CommandLineError(f"cmd reads the program name {program[:60]!r} in more than one way", ambiguous=True)
    return program
