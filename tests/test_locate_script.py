"""Static checks of joedefender-locate.ps1, the read-only locator (no pwsh on this machine; its
syntax tree, from tree-sitter-powershell, is checked against the contract, the emulator's
independent description of it, and the Constrained Language Mode rules)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

import pytest
import tree_sitter_powershell as tsp
from tree_sitter import Language, Node, Parser, Tree

from joedefender.endpoint import contract, locate_contract
from joedefender_emulators.mde import endpoint_script


@cache
def _source() -> bytes:
    return contract.script_bytes(contract.LOCATE_SCRIPT_NAME)


@cache
def _tree() -> Tree:
    return Parser(Language(tsp.language())).parse(_source())


def _text(node: Node) -> str:
    return _source()[node.start_byte : node.end_byte].decode()


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _code() -> str:
    """The script after its comment-based help."""
    text = _source().decode()
    return text[text.index("#>") :]


def test_locate_script_parses_and_is_ascii() -> None:
    assert not _tree().root_node.has_error
    _source().decode("ascii")


def test_its_parameters_are_the_contract_and_the_simulation() -> None:
    code = _code()
    for name, shortest, longest, pattern in endpoint_script.LOCATE_PARAMETERS:
        rule = contract.LOCATE_PARAMETER_RULES[name]
        assert (rule.min_length, rule.max_length, rule.pattern) == (shortest, longest, pattern)
        assert f"[ValidateLength({shortest}, {longest})]" in code
        assert f"[ValidatePattern('{pattern}')]" in code
    block = re.search(r"^param\((.*?)^\)", code, re.DOTALL | re.MULTILINE)
    assert block is not None
    declared = re.findall(r"\[string\]\$(\w+)", block.group(1))
    assert declared == list(contract.LOCATE_PARAMETER_RULES)
    assert re.search(r"PositionalBinding\s*=\s*\$false", code)


@pytest.mark.parametrize(
    "forbidden",
    [
        r"add-type",
        r"new-object",
        r"\]::",  # static .NET method calls and properties
        r"\.invoke\(",
        r"invoke-expression",
        r"set-content",
        r"out-file",
        r"new-item",
        r"remove-item",
        r"copy-item",
        r"move-item",
        r"set-acl",
        r"add-mppreference",
        r"remove-mppreference",
        r"mpcmdrun",
        r"\.open\(",
        r"start-process",
        r"invoke-webrequest",
    ],
)
def test_it_is_read_only_and_constrained_language_safe(forbidden: str) -> None:
    assert re.search(forbidden, _code().lower()) is None


def test_it_reports_its_language_mode_in_its_one_line() -> None:
    code = _code()
    assert "$ExecutionContext.SessionState.LanguageMode" in code
    document = re.search(r"\$document = \[pscustomobject\]@\{(.*?)\}", code, re.DOTALL)
    assert document is not None
    keys = re.findall(r"^\s*(\w+)\s*=", document.group(1), re.MULTILINE)
    assert keys == list(endpoint_script.LOCATE_KEYS)
    assert code.count("Write-Output") == 1
    assert "ConvertTo-Json -Compress" in code
    assert f"$Limit = {contract.LOCATE_LIMIT}" in code
    assert "Microsoft\\Windows Defender\\Quarantine\\ResourceData" in code


def test_its_exit_codes_follow_the_statuses() -> None:
    code = _code()
    assert re.search(r"'located'\)\s*\{\s*\$exitCode = " + str(contract.EXIT_FOUND), code)
    assert re.search(r"'not_found'\)\s*\{\s*\$exitCode = " + str(contract.EXIT_NOT_FOUND), code)
    assert code.rstrip().endswith("exit $exitCode")


# What the script may run: cmdlets that read, and the output; nothing that writes or runs code.
_CMDLETS = {
    "Set-StrictMode",
    "Join-Path",
    "Test-Path",
    "Get-ChildItem",
    "Get-Content",
    "Where-Object",
    "Sort-Object",
    "Select-Object",
    "ConvertTo-Json",
    "Write-Output",
}


def _command_name(command: Node) -> str:
    (name,) = [c for c in command.children if c.type == "command_name"]
    return _text(name)


def _commands() -> list[Node]:
    return [n for n in _walk(_tree().root_node) if n.type == "command"]


def test_it_runs_only_read_only_cmdlets() -> None:
    assert {_command_name(c) for c in _commands()} <= _CMDLETS


def _listings() -> dict[str, list[str]]:
    """Each Get-ChildItem pipeline by the folder it lists: the text of its commands, in order."""
    listings: dict[str, list[str]] = {}
    for command in _commands():
        if _command_name(command) == "Get-ChildItem":
            assert command.parent is not None
            assert command.parent.type == "pipeline_chain"
            stages = [_text(c).strip() for c in command.parent.children if c.type == "command"]
            folder = re.search(r"-LiteralPath (\$\w+)", stages[0])
            assert folder is not None
            listings[folder.group(1)] = stages
    return listings


def test_it_lists_resource_data_and_entries_newest_first_and_bounded() -> None:
    listings = _listings()
    assert set(listings) == {"$QuarantineData", "$QuarantineEntries"}
    for stages in listings.values():
        assert [s.split()[0] for s in stages] == ["Get-ChildItem", "Where-Object", "Sort-Object", "Select-Object"]
        assert stages[2] == "Sort-Object -Property LastWriteTimeUtc -Descending"
        assert stages[3] == "Select-Object -First $Limit"
    assert "-Recurse" in listings["$QuarantineData"][0]  # ResourceData\XX\<name>
    assert "-Recurse" not in listings["$QuarantineEntries"][0]  # Entries\{GUID}
    assert (
        "$QuarantineEntries = Join-Path $env:ProgramData 'Microsoft\\Windows Defender\\Quarantine\\Entries'" in _code()
    )


def test_its_entries_filter_takes_guid_names_only() -> None:
    where = _listings()["$QuarantineEntries"][1]
    found = re.search(r"-match '([^']+)'", where)
    assert found is not None
    pattern = re.compile(found.group(1).replace("$", r"\Z"), re.IGNORECASE)
    assert pattern.match("{80008A1B-0000-0000-7065-3EA2B161B275}")
    for name in (
        "80008A1B-0000-0000-7065-3EA2B161B275",
        "{80008A1B}",
        "desktop.ini",
        "{80008A1B-0000-0000-7065-3EA2B161B275}.bak",
    ):
        assert pattern.match(name) is None


def test_it_prints_the_entries_files_it_lists_within_the_contracts_bounds() -> None:
    code = _code()
    assert f"$EmbedEach = {locate_contract.ENTRIES_EMBED_EACH}" in code
    assert f"$EmbedTotal = {locate_contract.ENTRIES_EMBED_TOTAL}" in code
    assert (endpoint_script.LOCATE_PRINT_EACH, endpoint_script.LOCATE_PRINT_TOTAL) == (
        locate_contract.ENTRIES_EMBED_EACH,
        locate_contract.ENTRIES_EMBED_TOTAL,
    )
    # Within the loop over the listed Entries files, each within both bounds, counted when printed.
    assert "if ($file.Length -le $EmbedEach -and ($embedded + $file.Length) -le $EmbedTotal) {" in code
    assert "$embedded += $file.Length" in code
    # Bytes, upper-case hex, kept only when the whole file was read.
    assert "'{0:X2}' -f $byte" in code
    assert "if ($printed.Length -eq 2 * $file.Length) {" in code
    items = re.findall(r"\$Entries \+= \[pscustomobject\]@\{ (.*?) \}", code)
    assert [re.findall(r"(\w+) =", item) for item in items] == [["path", "size", "hex"], ["path", "size"]]


def test_it_reads_only_the_listed_entries_files_as_bytes() -> None:
    reads = [_text(c) for c in _commands() if _command_name(c) == "Get-Content"]
    assert reads == ["Get-Content -LiteralPath $file.FullName -ReadCount 0 @ByteRead"]
    code = _code()
    assert "$ByteRead = @{ Encoding = 'Byte' }" in code
    assert "$ByteRead = @{ AsByteStream = $true }" in code
    # The read sits in the loop over the Entries listing, never the ResourceData one.
    entries_loop = code.index("$embedded = 0")
    assert code.index("Get-Content") > entries_loop > code.index("$QuarantineEntries -File")
