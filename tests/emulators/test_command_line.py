"""The emulated endpoint's `Args` handling (Windows command-line splitting, then PowerShell's
binding), and the connector's contract checked against it on hostile input."""

from __future__ import annotations

import pytest

from joedefender.endpoint import contract
from joedefender.endpoint.contract import CollectRequest, ContractError
from joedefender_emulators.mde.command_line import BindingError, bind, split_command_line

SHA = "9f" * 32
COLLECT = ("JobId", "Sha256", "OriginalPathHex", "Mode")


@pytest.mark.parametrize(
    ("line", "words"),
    [
        # the examples of Microsoft's "Parsing C++ command-line arguments"
        ('"abc" d e', ["abc", "d", "e"]),
        ('a\\\\\\b d"e f"g h', ["a\\\\\\b", "de fg", "h"]),
        ('a\\\\\\"b c d', ['a\\"b', "c", "d"]),
        ('a\\\\\\\\"b c" d e', ["a\\\\b c", "d", "e"]),
        ('a"b"" c d', ['ab" c d']),
        # and what the connector must never rely on
        ("  spaced \t out  ", ["spaced", "out"]),
        ('""', [""]),
        ("'single quoted'", ["'single", "quoted'"]),
        ("a^b %TEMP% $(x) `y; z&w", ["a^b", "%TEMP%", "$(x)", "`y;", "z&w"]),
        ("C:\\dir\\ next", ["C:\\dir\\", "next"]),
        ('"C:\\dir\\" next', ['C:\\dir" next']),
        ("\u4e2d\u6587 \U0001f600", ["\u4e2d\u6587", "\U0001f600"]),
        ("cut\0 here", ["cut"]),
    ],
)
def test_the_command_line_is_split_by_the_windows_rules(line: str, words: list[str]) -> None:
    assert split_command_line(line) == words


def test_powershell_binds_names_case_insensitively_by_prefix_and_with_a_colon() -> None:
    assert bind('-mode Collect -job "j 1" -SHA256:abc', COLLECT) == {"Mode": "Collect", "JobId": "j 1", "Sha256": "abc"}


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ("Collect", "positional parameter"),
        ("-Mode Collect extra", "positional parameter"),
        ("-Force x", "cannot be found"),
        ("-O 00", "ambiguous"),  # OriginalPathHex, OutVariable, OutBuffer
        ("-JobId a -jobid b", "more than once"),
        ("-JobId -Sha256 x", "Missing an argument"),
        ("-JobId", "Missing an argument"),
        ("-Verbose:x", "not simulated"),
    ],
)
def test_powershell_refuses(args: str, complaint: str) -> None:
    with pytest.raises(BindingError, match=complaint):
        bind(args, COLLECT)


HOSTILE = [
    'C:\\Users\\a\\say "hi".exe',
    "C:\\Users\\o'brien\\x.exe",
    "C:\\Users\\a b\\c d.exe",
    "C:\\Users\\a\\trailing\\",
    'C:\\Users\\a\\\\\\"x',
    "C:\\Users\\a\\-Mode Cleanup -JobId x.exe",
    "C:\\Users\\a\\x.exe:stream",
    "C:\\Users\\\u4e2d\u6587\\\U0001f600 \u2019.exe",
    "C:\\Users\\a\\nul\0byte.exe",
    "C:\\Users\\a\\tab\there.exe",
    "C:\\" + "\u00e9" * 300,
]
HOSTILE_JOBS = ["j", "job 1", 'job"1', "-Mode", "job\\", "j\u00e9", "job:1", "a" * 65, ""]


def _meant(request: CollectRequest) -> dict[str, str]:
    """What the script should receive for `request`, by parameter."""
    values = {"Mode": request.mode, "JobId": request.job_id}
    if request.sha256 is not None:
        values["Sha256"] = request.sha256
    if request.original_path is not None:
        values["OriginalPathHex"] = request.original_path.encode("utf-8").hex()
    return values


@pytest.mark.parametrize("path", HOSTILE)
@pytest.mark.parametrize("job", HOSTILE_JOBS)
def test_the_contracts_args_bind_to_exactly_what_it_meant_or_are_refused_before_sending(path: str, job: str) -> None:
    """The contract is checked against the endpoint's tokeniser: whatever it formats, the
    endpoint binds to the values it meant; what it cannot say safely it refuses up front."""
    request = CollectRequest("Restore", job, SHA, original_path=path)
    try:
        args = contract.format_args(request)
    except ContractError:
        return
    assert bind(args, COLLECT) == _meant(request)
    assert split_command_line(args) == args.split(" ")  # no word needs quoting or escaping


@pytest.mark.parametrize("job", HOSTILE_JOBS)
def test_the_locate_args_bind_to_the_job_id_or_are_refused(job: str) -> None:
    try:
        args = contract.format_locate_args(job)
    except ContractError:
        return
    assert bind(args, ("JobId",)) == {"JobId": job}
