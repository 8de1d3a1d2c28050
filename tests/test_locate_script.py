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

from joedefender.endpoint import contract
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
