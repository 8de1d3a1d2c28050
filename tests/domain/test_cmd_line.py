"""cmd.exe's own rules: switches up to /c or /k, the quote rule of `cmd /?`, carets, operators."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from joedefender.domain.cmd_line import CmdCommand, cmd_command
from joedefender.domain.command_line import CommandLineError
from tests.domain.work import assert_linear


@pytest.mark.parametrize(
    ("line", "program", "command"),
    [
        ("cmd /c x.bat", "x.bat", "x.bat"),
        ("cmd.exe /C C:\\x\\a.bat arg", "C:\\x\\a.bat", "C:\\x\\a.bat arg"),
        ("cmd /k x.bat", "x.bat", "x.bat"),
        ("cmd /r x.bat", "x.bat", "x.bat"),  # an old synonym of /c
        ('"C:\\Windows\\system32\\cmd.exe" /c x.bat', "x.bat", "x.bat"),
        ("cmd /q /d /a /u /c x.bat", "x.bat", "x.bat"),
        ("cmd /q/c x.bat", "x.bat", "x.bat"),
        ("cmd /t:0a /e:on /f:off /v:off /c x.bat", "x.bat", "x.bat"),
        ("cmd /ccalc.exe", "calc.exe", "calc.exe"),
        ("cmd /c    x.bat", "x.bat", "x.bat"),
        # rule 1: two quotes around a name with a blank, no special character, an executable's extension
        ('cmd /c "C:\\a b\\x.bat"', "C:\\a b\\x.bat", '"C:\\a b\\x.bat"'),
        ('cmd /c "C:\\a b\\x.exe" -p & calc', "C:\\a b\\x.exe", '"C:\\a b\\x.exe" -p '),
        # rule 2: the first quote and the last one go
        ('cmd /c ""C:\\a b\\x.bat" arg"', "C:\\a b\\x.bat", '"C:\\a b\\x.bat" arg'),
        ('cmd /s /c "C:\\a b\\x.bat"', "C:\\a", "C:\\a b\\x.bat"),  # /S: always rule 2
        ('cmd /c "x.bat"', "x.bat", "x.bat"),  # no blank inside: rule 2
        ('cmd /c"x.bat"', "x.bat", "x.bat"),
        ('cmd /c "x.bat', "x.bat", "x.bat"),  # one quote: it is the first and the last
        ('cmd /c "C:\\a b\\x.bat" "y z"', "C:\\a", 'C:\\a b\\x.bat" "y z'),  # four quotes: rule 2, cmd's pitfall
        # carets, operators, delimiters
        ("cmd /c e^v^i^l.bat", "evil.bat", "evil.bat"),
        ('cmd /c "x^.bat"', "x.bat", "x.bat"),  # no blank inside: rule 2 strips the quotes, the caret escapes
        ('cmd /c ""x^.bat""', "x^.bat", '"x^.bat"'),  # a caret inside quotes is literal
        ("cmd /c x.bat ^& y", "x.bat", "x.bat & y"),
        ("cmd /c x.bat & del y", "x.bat", "x.bat "),
        ("cmd /c x.bat|more", "x.bat", "x.bat"),
        ("cmd /c x.bat > out.txt", "x.bat", "x.bat "),
        ("cmd /c ;,=@x.bat", "x.bat", "x.bat"),
        ("cmd /c x.bat,arg", "x.bat", "x.bat,arg"),
        ("cmd /c !x!", "!x!", "!x!"),  # without /V:ON, ! is ordinary
        ('cmd /c start "" C:\\x.exe', "start", 'start "" C:\\x.exe'),
    ],
)
def test_the_first_command(line: str, program: str, command: str) -> None:
    assert cmd_command(line) == CmdCommand(program, command)


@pytest.mark.parametrize("line", ["cmd", "cmd /q", "cmd /c", "cmd /c   ", "cmd /c & x", "cmd /k @"])
def test_nothing_to_run(line: str) -> None:
    assert cmd_command(line) is None


@pytest.mark.parametrize(
    ("line", "says", "ambiguous"),
    [
        ('cmd /c "C:\\a b\\x.txt"', "depending on the disk", True),
        ('cmd /c x^"y', "literal quote", True),
        ("cmd /c dir/w", "more than one way", True),
        ('cmd /c x"y".bat', "more than one way", True),
        ("cmd /c %TEMP%\\a.bat", "%variables%", False),
        ("cmd /v:on /c !TEMP!\\a.bat", "!variables!", False),
        ("cmd /c x.bat^", "caret", False),
        ("cmd /c (x.bat)", "parenthesised", False),
        ('cmd /c """x.bat', "not closed", False),
        ('cmd /c ""x.bat"y"', "right after", False),
        ("cmd /z /c x.bat", "unknown cmd switch", False),
        ("cmd /qq /c x.bat", "unknown cmd switch", False),
        ("cmd x.bat", "before any /c", False),
        ("cmd/c x.bat", "before any /c", False),  # the program name runs to the first blank
    ],
)
def test_what_cmd_reads_in_a_way_we_cannot_follow_is_refused(line: str, says: str, ambiguous: bool) -> None:
    with pytest.raises(CommandLineError, match=says) as caught:
        cmd_command(line)
    assert caught.value.ambiguous is ambiguous


@given(st.text(alphabet=st.sampled_from(list('cmd /ck"^&|<>()%!,;=@ab\\.:')), max_size=60))
def test_any_line_is_read_or_refused_with_a_command_line_error(line: str) -> None:
    with contextlib.suppress(CommandLineError):
        cmd_command(line)


@pytest.mark.parametrize("piece", ["^a", '"', "/q ", '"a b" ', "^^", ",;="])
def test_reading_is_linear_even_on_hostile_lines(piece: str) -> None:
    def hostile(size: int) -> str:
        body = piece * (size // len(piece))
        return ("cmd " + body + " /c x") if piece.startswith("/") else ("cmd /c " + body)

    assert_linear(cmd_command, hostile)
