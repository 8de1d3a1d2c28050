"""The endpoint scripts' contract: arguments, defanging, the output lines.

What format_args writes is read back by the MDE emulator's simulated script
(joedefender_emulators.mde.endpoint_script), which parses it as PowerShell binds it and is
written independently of the contract: each side checks the other."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re

import pytest
import tree_sitter_powershell as tsp
from tree_sitter import Language, Node, Parser

from joedefender.endpoint.contract import (
    DEFANG_KEY,
    EXIT_ERROR,
    EXIT_FOUND,
    EXIT_NOT_FOUND,
    SCRIPT_NAME,
    WORK_ROOT,
    CollectRequest,
    ContractError,
    Refanger,
    ScriptOutcome,
    defang,
    format_args,
    format_locate_args,
    job_folder,
    sample_path,
    script_bytes,
    script_path,
)
from joedefender.endpoint.locate_contract import LocateOutcome
from joedefender_emulators.mde import endpoint_script

SHA = hashlib.sha256(b"sample").hexdigest()
TRICKY_PIECES = [
    "'",
    "''",
    "\u2018",
    "\u2019",
    "\u201a",
    "\u201b",
    "`",
    "`'",
    "$()",
    "$(calc.exe)",
    "$env:TEMP",
    "${x}",
    "@(1)",
    ";",
    "; Remove-Item C:\\ -Recurse #",
    "|",
    "&",
    "&&",
    "-Mode 'Cleanup'",
    " ",
    "  ",
    "\u00e9",
    "\u4e2d\u6587",
    "\U0001f600",
    "\u200b",
    "%TEMP%",
    "!",
    "{}",
    "()",
    "#",
    "<#",
    "#>",
    "@'",
    "'@",
    "a",
    "Z9",
    ".",
    "-",
]


def _tricky(rng: random.Random, forbidden: str = "") -> str:
    parts = [p for p in rng.choices(TRICKY_PIECES, k=rng.randint(1, 6)) if not set(p) & set(forbidden)]
    return "".join(parts) or "x"


def _tricky_path(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 4)):
        part = _tricky(rng, forbidden='\\/:*?"<>|[]').strip()
        parts.append(part or "d")
    return rng.choice("CcDz") + ":\\" + "\\".join(parts)


def _requests(count: int) -> list[CollectRequest]:
    rng = random.Random(20240601)
    requests = []
    for _ in range(count):
        job = rng.choice(["j", "job-1", "A" * 64, "0-0-0", "7f3c2a1e-0b1d-4c55-9e21-0123456789ab"])
        sha = rng.choice([SHA, SHA.upper(), "0" * 64])
        requests.append(CollectRequest(mode="Collect", job_id=job, sha256=sha))
        requests.append(CollectRequest(mode="Restore", job_id=job, sha256=sha, original_path=_tricky_path(rng)))
        requests.append(CollectRequest(mode="Cleanup", job_id=rng.choice(["j", "job-2"])))
    return requests


# ---------------------------------------------------------------- arguments


def _bound(args: str) -> CollectRequest:
    """What the emulated endpoint binds from ``args``, as a request."""
    bound = endpoint_script.parse_args(args)
    path = bound.get("OriginalPathHex")
    return CollectRequest(
        mode=bound["Mode"],  # type: ignore[arg-type]  # the simulation checked it against its ValidateSet
        job_id=bound["JobId"],
        sha256=bound.get("Sha256"),
        original_path=None if path is None else bytes.fromhex(path).decode("utf-8"),
    )


@pytest.mark.parametrize("request_", _requests(100))
def test_format_then_parse_gives_the_request_back(request_: CollectRequest) -> None:
    args = format_args(request_)
    assert _bound(args) == request_
    assert re.fullmatch(r"[A-Za-z0-9 -]+", args), args
    assert args.startswith(f"-Mode {request_.mode} -JobId {request_.job_id}")


HOSTILE_NAMES = [
    "C:\\Users\\o'brien\\invoice.exe",
    "C:\\Users\\a\\say hi.exe",
    "C:\\Users\\a\\a&calc.exe",
    "C:\\Users\\a\\%TEMP%\\x.exe",
    "C:\\Users\\a\\^caret^.exe",
    "C:\\Users\\a\\$(calc.exe).exe",
    "C:\\Users\\a\\`backtick`.exe",
    "C:\\Users\\a\\x.exe; Remove-Item -Recurse #",
    "C:\\Users\\a\\\u2019quote\u2018.exe",
    "C:\\Users\\\u4e2d\u6587\\\U0001f600.exe",
    "C:\\Users\\a\\-Mode Cleanup.exe",
    "C:\\" + "\u00e9" * 300,
    "C:\\" + "x" * 296 + ".exe",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_become_args_of_only_letters_digits_and_dashes(name: str) -> None:
    """Whatever the tokeniser (the PowerShell parser, -File, or cmd.exe), these Args mean the same."""
    args = format_args(CollectRequest("Restore", "job-1", SHA, original_path=name))
    words = args.split(" ")
    assert all(re.fullmatch(r"[A-Za-z0-9-]+", w) for w in words), args
    assert words[::2] == ["-Mode", "-JobId", "-Sha256", "-OriginalPathHex"]
    assert not set(args) & set("'\"&%^$`;|<>()!\u2018\u2019")
    assert bytes.fromhex(words[-1]).decode("utf-8") == name
    assert _bound(args).original_path == name


def test_locate_args_are_the_job_id_only() -> None:
    assert format_locate_args("job-1") == "-JobId job-1"
    assert endpoint_script.parse_args(format_locate_args("job-1"), endpoint_script.LOCATE_PARAMETERS) == {
        "JobId": "job-1"
    }
    with pytest.raises(ContractError, match="JobId"):
        format_locate_args("a b")


def test_every_argument_is_one_bare_word_for_powershell() -> None:
    """PowerShell's own grammar (tree-sitter) sees each value as one bare word, never as code."""
    parser = Parser(Language(tsp.language()))
    for request in _requests(20):
        # tree-sitter-powershell does not accept digits in parameter names (PowerShell does).
        args = format_args(request).replace("-Sha256 ", "-ShaHash ")
        line = f"& .\\{SCRIPT_NAME} {args}".encode()
        tree = parser.parse(line)
        assert not tree.root_node.has_error, line
        kinds = {n.type for n in _walk(tree.root_node)}
        assert not kinds & {"variable", "sub_expression", "expandable_string_literal", "pipeline_chain_tail"}
        commands = [n for n in _walk(tree.root_node) if n.type == "command"]
        assert len(commands) == 1, line


def _walk(node: Node) -> list[Node]:
    nodes = [node]
    for child in node.children:
        nodes.extend(_walk(child))
    return nodes


@pytest.mark.parametrize(
    ("request_", "complaint"),
    [
        (CollectRequest("Collect", "j"), "Sha256 is required"),
        (CollectRequest("Restore", "j", SHA), "OriginalPath is required"),
        (CollectRequest("Collect", "j", "a" * 63), "Sha256"),
        (CollectRequest("Collect", "j", "g" * 64), "Sha256"),
        (CollectRequest("Collect", "j", "a" * 63 + "\n"), "Sha256"),
        (CollectRequest("Collect", "j", "a" * 64 + "\n"), "Sha256"),
        (CollectRequest("Collect", "", SHA), "JobId"),
        (CollectRequest("Collect", "a" * 65, SHA), "JobId"),
        (CollectRequest("Collect", "..", SHA), "JobId"),
        (CollectRequest("Collect", "a\\b", SHA), "JobId"),
        (CollectRequest("Collect", "a b", SHA), "JobId"),
        (CollectRequest("Collect", "job\n", SHA), "JobId"),
        (CollectRequest("Cleanup", "a/b"), "JobId"),
        (CollectRequest("Restore", "j", SHA, original_path="relative\\file.exe"), "OriginalPath"),
        (CollectRequest("Restore", "j", SHA, original_path="\\\\server\\share\\f.exe"), "OriginalPath"),
        (CollectRequest("Restore", "j", SHA, original_path="C:"), "OriginalPath"),
        (CollectRequest("Restore", "j", SHA, original_path="C:\\dir\\"), "OriginalPath"),
        (CollectRequest("Restore", "j", SHA, original_path="C:\\*.exe"), "OriginalPath"),
        (CollectRequest("Restore", "j", SHA, original_path="C:\\a?.exe"), "OriginalPath"),
        (CollectRequest("Restore", "j", SHA, original_path='C:\\a" -Path "C:\\x'), "OriginalPath"),
        (CollectRequest("Restore", "j", SHA, original_path="C:\\a.txt:stream"), "OriginalPath"),
        (CollectRequest("Restore", "j", SHA, original_path="C:\\a\nb.exe"), "OriginalPath"),
        (CollectRequest("Restore", "j", SHA, original_path="C:\\a\ud800.exe"), "OriginalPath"),
        (CollectRequest("Restore", "j", SHA, original_path="C:\\" + "a" * 1022), "OriginalPath"),
        (CollectRequest("Recover", "j", SHA), "Mode"),  # type: ignore[arg-type]
    ],
)
def test_validation_names_what_is_wrong(request_: CollectRequest, complaint: str) -> None:
    with pytest.raises(ContractError, match=complaint):
        request_.validate()
    with pytest.raises(ContractError, match=complaint):
        format_args(request_)


def test_longest_values_still_pass() -> None:
    request = CollectRequest("Restore", "a" * 64, SHA, original_path="C:\\" + "\u4e2d" * 1021)
    request.validate()
    assert _bound(format_args(request)) == request


def test_job_paths() -> None:
    assert job_folder("job-1") == "C:\\ProgramData\\joedefender\\job-1"
    assert sample_path("job-1") == "C:\\ProgramData\\joedefender\\job-1\\sample.bin"
    assert job_folder("x").startswith(WORK_ROOT + "\\")
    with pytest.raises(ContractError):
        job_folder("..\\..\\Windows")


def test_script_is_bundled_package_data() -> None:
    assert script_path().name == SCRIPT_NAME
    assert script_path().is_file()
    assert script_bytes().startswith(b"<#")
    assert script_bytes() == script_path().read_bytes()


# ---------------------------------------------------------------- defanging


def _naive_defang(data: bytes, offset: int) -> bytes:
    return bytes(b ^ DEFANG_KEY[(offset + i) % len(DEFANG_KEY)] for i, b in enumerate(data))


def test_defang_key_is_fixed_and_changes_every_byte() -> None:
    assert len(DEFANG_KEY) == 32
    assert 0 not in DEFANG_KEY


@pytest.mark.parametrize("offset", [0, 1, 31, 32, 33, 1000, 2**40 + 5])
def test_defang_is_a_positional_xor(offset: int) -> None:
    data = random.Random(offset).randbytes(777)
    assert defang(data, offset) == _naive_defang(data, offset)
    assert defang(defang(data, offset), offset) == data


def test_defanged_bytes_share_nothing_with_the_sample() -> None:
    data = b"MZ\x90\x00" + bytes(200)
    assert all(a != b for a, b in zip(defang(data), data, strict=True))


def test_defang_edge_cases() -> None:
    assert defang(b"") == b""
    assert defang(b"", 5) == b""
    with pytest.raises(ValueError, match="offset"):
        defang(b"x", -1)


@pytest.mark.parametrize("seed", range(25))
def test_defang_and_refanger_in_arbitrary_chunks(seed: int) -> None:
    rng = random.Random(seed)
    sample = rng.randbytes(rng.randint(0, 5000))
    cuts = sorted(rng.sample(range(len(sample) + 1), k=min(len(sample) + 1, rng.randint(0, 12))))
    bounds = [0, *cuts, len(sample)]
    chunks = [sample[a:b] for a, b in itertools.pairwise(bounds)]

    defanged = b"".join(defang(chunk, start) for chunk, start in zip(chunks, bounds, strict=False))
    assert defanged == defang(sample)

    refanger = Refanger()
    offsets = []
    pieces = []
    for a, b in itertools.pairwise(bounds):
        offsets.append(refanger.offset)
        pieces.append(refanger.feed(defanged[a:b]))
    assert b"".join(pieces) == sample
    assert offsets == bounds[:-1]
    assert refanger.offset == len(sample)


def test_defang_is_fast_enough_for_large_chunks() -> None:
    chunk = bytes(8 * 1024 * 1024)
    assert defang(defang(chunk, 3), 3) == chunk


# ---------------------------------------------------------------- the output line


OUTCOMES = [
    ScriptOutcome("found", SHA, 123, sample_path("job-1"), "quarantine", ""),
    ScriptOutcome("found", SHA, 0, sample_path("job-1"), "restore", "quarantine: 3 entries decoded, 0 skipped"),
    ScriptOutcome("not_found", message="no quarantined file has this SHA-256"),
    ScriptOutcome("error", message='failed: C:\\Users\\o\'brien\\"x" \u4e2d \n\t{"joedefender":1}'),
    ScriptOutcome("cleaned"),
]


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_output_line_round_trip(outcome: ScriptOutcome) -> None:
    line = outcome.to_output_line()
    assert "\n" not in line
    assert json.loads(line)["joedefender"] == 1
    assert ScriptOutcome.from_script_output(line) == outcome


def test_output_line_format() -> None:
    line = OUTCOMES[0].to_output_line()
    assert line == (
        '{"joedefender":1,"status":"found","sha256":"' + SHA + '","size":123,'
        '"path":"C:\\\\ProgramData\\\\joedefender\\\\job-1\\\\sample.bin","source":"quarantine","message":""}'
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [("found", EXIT_FOUND), ("cleaned", EXIT_FOUND), ("not_found", EXIT_NOT_FOUND), ("error", EXIT_ERROR)],
)
def test_exit_codes(status: str, code: int) -> None:
    outcome = next(o for o in OUTCOMES if o.status == status)
    assert outcome.exit_code == code
    assert (EXIT_FOUND, EXIT_ERROR, EXIT_NOT_FOUND) == (0, 1, 2)


def test_output_line_is_found_amid_noise() -> None:
    outcome = OUTCOMES[1]
    noise = "\r\n".join(
        [
            "WARNING: something",
            "{not json",
            '{"other": 1}',
            "[1, 2]",
            "\ufeff" + outcome.to_output_line() + "   ",
            "",
            "Transcript stopped",
        ]
    )
    assert ScriptOutcome.from_script_output(noise) == outcome


def test_output_as_windows_powershell_writes_it() -> None:
    """ConvertTo-Json in Windows PowerShell 5.1 escapes quotes and < > & as \\uXXXX."""
    line = (
        '{"joedefender":1,"status":"error","sha256":null,"size":null,"path":null,'
        '"source":null,"message":"failed: C:\\\\a\\u0027b \\u003cx\\u003e \\u0026"}'
    )
    outcome = ScriptOutcome.from_script_output(line)
    assert outcome == ScriptOutcome("error", message="failed: C:\\a'b <x> &")


@pytest.mark.parametrize(
    ("output", "complaint"),
    [
        ("", "no joedefender result line"),
        ("hello\nworld", "no joedefender result line"),
        ('{"status":"found"}', "no joedefender result line"),
        (OUTCOMES[2].to_output_line() + "\n" + OUTCOMES[4].to_output_line(), "2 joedefender result lines"),
        ('{"joedefender":2,"status":"cleaned","message":""}', "version"),
        ('{"joedefender":1,"status":"gone","message":""}', "unknown status"),
        ('{"joedefender":1,"status":"found","sha256":null,"size":1,"path":"p","source":"quarantine"}', "found"),
        ('{"joedefender":1,"status":"found","sha256":"AB","size":1,"path":"p","source":"quarantine"}', "sha256"),
        ('{"joedefender":1,"status":"cleaned","size":"12"}', "size"),
        ('{"joedefender":1,"status":"cleaned","size":-1}', "size"),
        ('{"joedefender":1,"status":"cleaned","size":true}', "size"),
        ('{"joedefender":1,"status":"cleaned","source":"disk"}', "source"),
        ('{"joedefender":1,"status":"cleaned","path":5}', "path"),
        ('{"joedefender":1,"status":"cleaned","message":[1]}', "message"),
    ],
)
def test_bad_output_is_a_contract_error(output: str, complaint: str) -> None:
    with pytest.raises(ContractError, match=complaint):
        ScriptOutcome.from_script_output(output)


_RESOURCE = "C:\\ProgramData\\Microsoft\\Windows Defender\\Quarantine\\ResourceData\\F7\\" + "F7" * 20
_ENTRY = "C:\\ProgramData\\Microsoft\\Windows Defender\\Quarantine\\Entries\\{80008A1B-0000-0000-7065-3EA2B161B275}"


def _locate_line(**fields: object) -> str:
    document = {"joedefender": 1, "status": "located", "languageMode": "ConstrainedLanguage", "message": ""}
    return json.dumps({**document, "resources": [{"path": _RESOURCE, "size": 272}], **fields})


def test_a_locate_line_without_entries_parses_with_none() -> None:
    located = LocateOutcome.from_script_output(_locate_line())
    assert [r.path for r in located.resources] == [_RESOURCE]
    assert located.entries == ()
    assert LocateOutcome.from_script_output(_locate_line(entries=None)).entries == ()


def test_a_locate_line_keeps_only_entries_files_under_the_quarantine() -> None:
    listed = [
        {"path": _ENTRY, "size": 362},
        {"path": _ENTRY.lower(), "size": 362},  # Windows paths compare case-insensitively
        {"path": _RESOURCE, "size": 272},  # not an Entries file
        {"path": _ENTRY.replace("Entries", "Elsewhere"), "size": 1},
        {"path": _ENTRY + "\\x", "size": 1},
        {"path": _ENTRY.replace("{80008A1B", "{80008A1"), "size": 1},
    ]
    located = LocateOutcome.from_script_output(_locate_line(entries=listed))
    assert [(e.path, e.size) for e in located.entries] == [(_ENTRY, 362), (_ENTRY.lower(), 362)]


@pytest.mark.parametrize(
    "entries",
    [
        "not a list",
        [{"path": _ENTRY, "size": 1}] * 65,
        ["a path"],
        [{"path": _ENTRY}],
        [{"path": _ENTRY, "size": -1}],
        [{"path": _ENTRY, "size": True}],
        [{"path": 7, "size": 1}],
    ],
)
def test_a_locate_line_with_malformed_entries_is_refused(entries: object) -> None:
    with pytest.raises(ContractError):
        LocateOutcome.from_script_output(_locate_line(entries=entries))
