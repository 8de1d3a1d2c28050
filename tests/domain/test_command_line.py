"""Windows command lines split as the CRT, CommandLineToArgvW and the plain quote rule split them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from joedefender.domain.command_line import (
    MAX_COMMAND_LINE,
    READINGS,
    CommandLineError,
    CommandLineTooLong,
    Dialect,
    split_command_line,
)
from tests.domain.work import assert_linear

CRT, SHELL32, PLAIN = Dialect.CRT, Dialect.SHELL32, Dialect.PLAIN


# "Parsing C++ command-line arguments", the results table: input after the program name, argv[1:].
@pytest.mark.parametrize(
    ("arguments", "argv"),
    [
        ('"abc" d e', ["abc", "d", "e"]),
        (r'a\\b d"e f"g h', [r"a\\b", "de fg", "h"]),
        (r"a\\\"b c d", [r"a\"b", "c", "d"]),
        (r'a\\\\"b c" d e', [r"a\\b c", "d", "e"]),
        ('a"b"" c d', ['ab" c d']),
    ],
)
def test_the_documented_crt_examples(arguments: str, argv: list[str]) -> None:
    assert split_command_line("prog " + arguments, CRT)[1:] == tuple(argv)


def test_a_doubled_quote_inside_quotes_ends_them_for_command_line_to_argv_w() -> None:
    # MicrosoftDocs/cpp-docs issue 3291: CommandLineToArgvW on the documented example.
    assert split_command_line('"program.exe" a"b"" c d', SHELL32) == ("program.exe", 'ab"', "c", "d")
    assert split_command_line('"program.exe" a"b"" c d', CRT) == ("program.exe", 'ab" c d')


def test_command_line_to_argv_w_takes_the_program_name_literally_up_to_a_blank() -> None:
    # cpp-docs issue 3697: argv[0] keeps its backslashes and quotes.
    assert split_command_line('123\\"abc" d e', SHELL32) == ('123\\"abc"', "d", "e")
    assert split_command_line(r'a\\\\"b c" d e', SHELL32) == (r'a\\\\"b', "c d e")


def test_a_quoted_program_name_ends_at_its_closing_quote_for_command_line_to_argv_w_only() -> None:
    line = '"C:\\a b\\x.exe"foo bar'
    assert split_command_line(line, SHELL32) == ("C:\\a b\\x.exe", "foo", "bar")
    assert split_command_line(line, CRT) == ("C:\\a b\\x.exefoo", "bar")


def test_a_line_starting_with_a_blank_has_an_empty_program_name_for_command_line_to_argv_w() -> None:
    assert split_command_line("  x.exe a", SHELL32) == ("", "x.exe", "a")


def test_backslashes_in_the_program_name_are_literal_in_every_reading() -> None:
    for dialect in READINGS:
        assert split_command_line('"C:\\dir\\"x', dialect)[0].startswith("C:\\dir\\")


@pytest.mark.parametrize(
    ("arguments", "crt", "plain"),
    [
        (r'"C:\a b\\" x', [r"C:\a b" + "\\", "x"], [r"C:\a b\\", "x"]),
        (r"C:\temp\x.dll,Go", [r"C:\temp\x.dll,Go"], [r"C:\temp\x.dll,Go"]),
        ('c:\\"sample scripts"\\chart.vbs', ['c:"sample', "scripts\\chart.vbs"], ["c:\\sample scripts\\chart.vbs"]),
        ('"open', ["open"], ["open"]),
        ('"" x', ["", "x"], ["", "x"]),
        ("a\tb  c", ["a", "b", "c"], ["a", "b", "c"]),
        ("a\nb\x0bc", ["a\nb\x0bc"], ["a\nb\x0bc"]),  # only space and tab separate
        ("^a ^& b", ["^a", "^&", "b"], ["^a", "^&", "b"]),  # the caret is an ordinary character
    ],
)
def test_backslashes_escape_quotes_except_in_the_plain_reading(
    arguments: str, crt: list[str], plain: list[str]
) -> None:
    assert split_command_line("p " + arguments, CRT)[1:] == tuple(crt)
    assert split_command_line("p " + arguments, PLAIN)[1:] == tuple(plain)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "empty"),
        (" \t ", "empty"),
        ("x.exe a\0b", "NUL"),
    ],
)
def test_what_no_process_can_have_is_refused(line: str, message: str) -> None:
    with pytest.raises(CommandLineError, match=message):
        split_command_line(line)


def test_a_line_longer_than_windows_allows_is_refused_counting_utf16_units() -> None:
    longest = "x" * (MAX_COMMAND_LINE - 1)  # with the terminating NUL: 32,767
    assert split_command_line(longest) == (longest,)
    with pytest.raises(CommandLineTooLong, match="32,767"):
        split_command_line(longest + "x")
    astral = "\U0001f600" * ((MAX_COMMAND_LINE - 1) // 2)  # two UTF-16 units each
    assert len(split_command_line(astral)[0]) == len(astral)
    with pytest.raises(CommandLineTooLong):
        split_command_line(astral + "x")


def _argv_quoted(arg: str) -> str:
    """An argument quoted for the CRT the documented way (backslashes doubled only before a quote)."""
    if arg and not any(ch in ' \t"' for ch in arg):
        return arg
    out, backslashes = ['"'], 0
    for ch in arg:
        if ch == "\\":
            backslashes += 1
            continue
        out.append("\\" * (2 * backslashes + 1) + '"' if ch == '"' else "\\" * backslashes + ch)
        backslashes = 0
    out.append("\\" * (2 * backslashes) + '"')
    return "".join(out)


_ARG = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=20)


@given(st.lists(_ARG, max_size=6))
def test_arguments_quoted_by_the_documented_rules_come_back_unchanged(args: list[str]) -> None:
    line = " ".join(["prog", *(_argv_quoted(arg) for arg in args)])
    assert split_command_line(line, CRT) == ("prog", *args)
    assert split_command_line(line, SHELL32) == ("prog", *args)  # the quoting never doubles a quote


_UNQUOTED = st.text(alphabet=st.sampled_from(list("ab\\ \t,.:^&")), min_size=1, max_size=40)


@given(_UNQUOTED.filter(lambda s: s[0] not in " \t"))
def test_without_quotes_every_reading_splits_on_blanks_only(line: str) -> None:
    expected = tuple(re.split("[ \t]+", line.strip(" \t")))
    for dialect in READINGS:
        assert split_command_line(line, dialect) == expected


@given(st.text(max_size=200), st.sampled_from(READINGS))
def test_any_text_is_split_or_refused_with_a_command_line_error(line: str, dialect: Dialect) -> None:
    try:
        argv = split_command_line(line, dialect)
    except CommandLineError:
        return
    assert argv


@pytest.mark.parametrize("dialect", READINGS)
@pytest.mark.parametrize(
    "piece",
    ['\\\\\\"', '"', '""', "\\", " \t", '"\\ "', 'a"b""', "a "],
)
def test_splitting_is_linear_even_on_hostile_lines(dialect: Dialect, piece: str) -> None:
    assert_linear(lambda line: split_command_line(line, dialect), lambda size: "p " + piece * (size // len(piece)))
