"""Static checks of joedefender-collect.ps1, and of the quarantine format it decodes.

There is no PowerShell on this machine (Debian ships no pwsh), so the script cannot be run
here. Instead: its syntax tree (tree-sitter-powershell) is checked against the contract in
joedefender.endpoint.contract, against the MDE emulator's independent description of it
(joedefender_emulators.mde.endpoint_script) and against the hygiene rules (design.md
section 2); the Defender key and BackupRead layout it relies on are pinned by a Python
reference decoder on synthetic quarantine blobs; and its embedded C# decoder is compiled and
run on those blobs where Mono (``mcs``, ``mono``) is installed.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import tree_sitter_powershell as tsp
from tree_sitter import Language, Node, Parser, Tree

from joedefender.endpoint import contract
from joedefender.endpoint.contract import (
    DEFANG_KEY,
    PARAMETER_RULES,
    SCRIPT_NAME,
    WORK_ROOT,
    CollectRequest,
    ScriptOutcome,
    defang,
    format_args,
    sample_path,
    script_bytes,
)
from joedefender_emulators.mde import endpoint_script

# Defender's quarantine RC4 key, from reference/defender-quarantine.md section 2 (the same in
# dissect.target, defender-dump, maldump, CAPEv2 and Velociraptor).
DEFENDER_RC4_KEY = bytes.fromhex(
    "1E87781B8DBAA844CE69702C0C78B786A3F623B738F5EDF9AF83530FB3FC54FAA21EB9CF1331FD0F0DA954F687CB9E18"
    "279697900E53FB317C9CBCE48E23D05371ECC15951B8F3649D7CA33ED68DC9047E82C9BAAD9799D0D458CB847CA9FFBE"
    "3C8A775233557DDE13A8B14087CC1BC8F10F6ECDD083A959CFF84A9D1D50755E3E191818AF23E2293558766D2C07E257"
    "12B2CA0B535ED8F6C56CE73D24BDD0291771861A54B4C285A9A3DB7ACA6D224AEACD621DB9F2A22ED1E9E11D75BED7DC"
    "0ECB0A8E68A2FF1263408DC808DFFD164B116774CD0B9B8D05411ED6262E429BA495676B8398DB2F35D3C1B9CED52636"
    "F2765E1A95CB7CA4C3DDABDDBFF38253"
)
FIRST_KEYSTREAM_BYTES = "08ad009893fdde68c2f991c781fafc90"
REFERENCE_DOC = Path("/work/shared/reference/defender-quarantine.md")

STREAM_DATA, STREAM_SECURITY, STREAM_ALTERNATE = 1, 3, 4


# ---------------------------------------------------------------- syntax tree helpers


@cache
def _tree() -> Tree:
    return Parser(Language(tsp.language())).parse(script_bytes())


def _text(node: Node) -> str:
    return script_bytes()[node.start_byte : node.end_byte].decode()


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _nodes(kind: str, under: Node | None = None) -> list[Node]:
    return [n for n in _walk(under or _tree().root_node) if n.type == kind]


def _commands(under: Node | None = None) -> list[str]:
    """Names of the commands called (cmdlets, functions, executables) under ``under``."""
    return [_text(n).lower() for n in _nodes("command_name", under)]


def _verbatim(node: Node) -> str:
    """The value of a single-quoted PowerShell string literal node."""
    text = _text(node)
    assert text[0] == "'", text
    assert text[-1] == "'", text
    return text[1:-1].replace("''", "'")


def _string_literals(node: Node) -> list[str]:
    return [_verbatim(n) for n in _nodes("verbatim_string_characters", node)]


def _top_level_param_block() -> Node:
    blocks = [c for c in _tree().root_node.children if c.type == "param_block"]
    assert len(blocks) == 1
    return blocks[0]


def _script_parameters() -> dict[str, dict[str, list[str]]]:
    """{parameter name: {attribute name: [its string arguments]}} read from the param block."""
    params: dict[str, dict[str, list[str]]] = {}
    param_list = next(c for c in _top_level_param_block().children if c.type == "parameter_list")
    for parameter in (c for c in param_list.children if c.type == "script_parameter"):
        name = next(_text(c) for c in parameter.children if c.type == "variable").lstrip("$")
        attributes: dict[str, list[str]] = {}
        for attribute in _nodes("attribute", parameter):
            names = [c for c in attribute.children if c.type == "attribute_name"]
            if names:
                arguments = [_text(n) for n in _nodes("attribute_argument", attribute)]
                literal_args = _string_literals(attribute)
                attributes[_text(names[0])] = literal_args or arguments
        params[name] = attributes
    return params


def _assigned_string(variable: str) -> str:
    """The single-quoted string assigned to ``$variable`` at the top level of the script."""
    values = []
    for assignment in _nodes("assignment_expression"):
        left = _nodes("variable", assignment.children[0])
        if left and _text(left[0]).lower() == variable.lower():
            values.extend(_string_literals(assignment.children[-1]))
    assert len(values) == 1, f"{variable} should be assigned one string literal, found {values}"
    return values[0]


def _function(name: str) -> Node:
    for function in _nodes("function_statement"):
        if any(c.type == "function_name" and _text(c).lower() == name.lower() for c in function.children):
            return function
    raise AssertionError(f"function {name} not found")


def _code_outside_strings_and_comments() -> str:
    """The script's leaf tokens, without comments and string contents (C# here-string included)."""
    skip = {"comment", "string_literal"}
    parts: list[str] = []

    def visit(node: Node) -> None:
        if node.type in skip:
            parts.append(" ")
            return
        if node.child_count == 0:
            parts.append(_text(node))
        for child in node.children:
            visit(child)

    visit(_tree().root_node)
    return " ".join(parts)


def _assigned_here_string(variable: str) -> str:
    for assignment in _nodes("assignment_expression"):
        left = _nodes("variable", assignment.children[0])
        if left and _text(left[0]).lower() == variable.lower():
            here = _nodes("verbatim_here_string_characters", assignment.children[-1])
            assert len(here) == 1
            text = _text(here[0])
            assert text.startswith("@'")
            assert text.endswith("'@")
            return text[2:-2].strip("\r\n")
    raise AssertionError(f"{variable} is not assigned a here-string")


# ---------------------------------------------------------------- the script's syntax and contract


def test_script_parses_without_errors() -> None:
    broken = [
        f"{n.type} at line {n.start_point[0] + 1}" for n in _walk(_tree().root_node) if n.is_error or n.is_missing
    ]
    assert broken == []
    assert not _tree().root_node.has_error


def test_script_is_ascii_so_windows_powershell_reads_it_the_same_in_every_code_page() -> None:
    script_bytes().decode("ascii")


def test_param_block_declares_exactly_what_format_args_emits() -> None:
    restore = CollectRequest(
        mode="Restore",
        job_id="job-1",
        sha256="ab" * 32,
        original_path=r"C:\Users\user\Downloads\invoice.exe",
    )
    cleanup = CollectRequest(mode="Cleanup", job_id="job-1")
    emitted = set(re.findall(r"(?:^| )-([A-Za-z0-9]+) ", format_args(restore) + " " + format_args(cleanup)))
    assert emitted == set(_script_parameters())
    assert emitted == set(contract.PARAMETER_NAMES)


def test_param_block_validation_matches_the_contract_rules() -> None:
    params = _script_parameters()
    assert params["Mode"]["ValidateSet"] == list(contract.MODES)
    for name, rule in PARAMETER_RULES.items():
        assert params[name]["ValidatePattern"] == [rule.pattern], name
        assert params[name]["ValidateLength"] == [str(rule.min_length), str(rule.max_length)], name
    for name, attributes in params.items():
        assert {"ValidateSet", "ValidatePattern"} & set(attributes), f"{name} is not validated"


def test_param_block_validation_matches_the_emulators_simulation() -> None:
    params = _script_parameters()
    assert params["Mode"]["ValidateSet"] == list(endpoint_script.SCRIPT_MODES)
    assert set(params) == {"Mode", *(name for name, *_ in endpoint_script.SCRIPT_PARAMETERS)}
    for name, shortest, longest, pattern in endpoint_script.SCRIPT_PARAMETERS:
        assert params[name]["ValidatePattern"] == [pattern], name
        assert params[name]["ValidateLength"] == [str(shortest), str(longest)], name


def test_script_rejects_positional_and_unknown_arguments() -> None:
    binding = [n for n in _nodes("attribute") if "CmdletBinding" in _text(n)]
    assert len(binding) == 1
    assert re.search(r"PositionalBinding\s*=\s*\$false", _text(binding[0]), re.IGNORECASE)


def test_strict_mode_and_stop_on_errors() -> None:
    code = _text(_tree().root_node)
    assert re.search(r"^Set-StrictMode -Version Latest$", code, re.MULTILINE)
    assert re.search(r"^\$ErrorActionPreference = 'Stop'$", code, re.MULTILINE)


@pytest.mark.parametrize(
    "forbidden",
    [
        "invoke-expression",
        "iex",
        "start-process",
        "saps",
        "start",
        "invoke-webrequest",
        "iwr",
        "invoke-restmethod",
        "irm",
        "curl",
        "wget",
        "start-bitstransfer",
        "invoke-command",
        "icm",
        "new-pssession",
        "cmd",
        "cmd.exe",
        "powershell",
        "powershell.exe",
    ],
)
def test_script_never_runs_dynamic_code_or_touches_the_network(forbidden: str) -> None:
    assert forbidden not in _commands()


@pytest.mark.parametrize(
    "pattern",
    [
        r"invoke-expression",
        r"\biex\b",
        r"start-process",
        r"net\.webclient",
        r"system\.net\b",
        r"httpclient",
        r"downloadstring",
        r"scriptblock\]::create",
        r"\$executioncontext",
        r"system\.diagnostics",
        r"system\.reflection",
        r"dllimport",
        r"invoke-webrequest",
        r"invoke-restmethod",
    ],
)
def test_no_dynamic_code_or_network_anywhere_in_the_text(pattern: str) -> None:
    text = script_bytes().decode().lower()
    # The comment-based help may name what the script does not do; everything else may not.
    help_end = text.index("#>")
    assert re.search(pattern, text[help_end:]) is None


def test_no_powershell7_only_syntax() -> None:
    code = _code_outside_strings_and_comments()
    for token in ("??", "?.", "&&", "||", "-Parallel", "-AsHashtable"):
        assert token not in code, token


def test_attacker_values_are_never_built_into_strings() -> None:
    """Threat names and paths come from the attacker's side: they are passed only as data."""
    for name in ("$OriginalPath", "$originalPath", "$OriginalPathHex"):
        for variable in (n for n in _nodes("variable") if _text(n).lower() == name.lower()):
            ancestor = variable.parent
            while ancestor is not None:
                assert ancestor.type != "expandable_string_literal", f"{name} inside a string"
                if ancestor.type == "additive_expression":
                    operators = [c.type for c in ancestor.children if c.child_count == 0]
                    assert "+" not in operators, f"{name} concatenated"
                ancestor = ancestor.parent
    # ThreatName is gone: the hash decides which entry is taken.
    assert not [n for n in _nodes("variable") if _text(n).lower() == "$threatname"]


def test_mpcmdrun_gets_an_argument_array_through_the_call_operator() -> None:
    restore = _function("Invoke-Restore")
    calls = [c for c in _nodes("command", restore) if any(k.type == "command_invokation_operator" for k in c.children)]
    assert len(calls) == 1
    assert "$MpCmdRun @arguments" in _text(calls[0])
    array = [a for a in _nodes("assignment_expression", restore) if _text(a).startswith("$arguments")]
    assert len(array) == 1
    assert _nodes("array_expression", array[0]), "MpCmdRun's arguments must be an @() array"
    assert "$OriginalPath" in _text(array[0])
    assert _string_literals(array[0]) == ["-Restore", "-FilePath", "-Path"]


def test_every_exclusion_added_is_removed_in_a_finally() -> None:
    adds = [n for n in _nodes("command") if _commands(n)[:1] == ["add-mppreference"]]
    assert adds, "the restore fallback adds a temporary exclusion"
    for add in adds:
        ancestor = add.parent
        guarded = False
        while ancestor is not None and not guarded:
            if ancestor.type == "try_statement":
                finally_blocks = [c for c in ancestor.children if c.type == "finally_clause"]
                guarded = any("remove-mppreference" in _commands(f) for f in finally_blocks)
            ancestor = ancestor.parent
        assert guarded, "Add-MpPreference outside a try whose finally calls Remove-MpPreference"


def test_collect_mode_never_restores_or_excludes() -> None:
    collect = _commands(_function("Invoke-Collect"))
    assert not {"invoke-restore", "add-mppreference", "invoke-restoremode"} & set(collect)


def test_restore_finally_deletes_the_plaintext_before_removing_the_exclusion() -> None:
    restore = _function("Invoke-RestoreMode")
    tries = [t for t in _nodes("try_statement", restore) if any(c.type == "finally_clause" for c in t.children)]
    assert len(tries) == 1
    finally_clause = next(c for c in tries[0].children if c.type == "finally_clause")
    commands = _commands(finally_clause)
    assert "remove-mppreference" in commands
    removals = [c for c in _nodes("command", finally_clause) if _commands(c)[:1] == ["remove-item"]]
    assert any("$restoreFolder" in _text(c) and "-Recurse" in _text(c) for c in removals)
    # The plaintext goes while the exclusion still holds, so real-time protection cannot act on it.
    assert commands.index("remove-item") < commands.index("remove-mppreference")
    # Everything that writes plaintext (MpCmdRun restore) happens inside that try.
    body = next(c for c in tries[0].children if c.type == "statement_block")
    assert "invoke-restore" in _commands(body)
    assert "invoke-restore" not in _commands(restore)[: _commands(restore).index("invoke-restore")]
    # Restored into the SYSTEM-only folder, and each restored file's own ACL checked before reading.
    assert "new-protectedfolder" in _commands(body)
    assert _commands(body).index("new-protectedfolder") < _commands(body).index("invoke-restore")
    assert "assert-systemonlyfile" in _commands(body)
    assert "GetAccessRules" in _text(_function("Assert-SystemOnlyFile"))


def test_job_folder_is_created_with_a_system_only_acl() -> None:
    security = _text(_function("New-SystemOnlySecurity"))
    assert "SetAccessRuleProtection($true, $false)" in security
    assert "SetOwner((New-Object System.Security.Principal.SecurityIdentifier($SystemSid)))" in security
    assert _assigned_string("$SystemSid") == "S-1-5-18" == endpoint_script.SYSTEM_SID
    assert _assigned_string("$AdministratorsSid") == "S-1-5-32-544" == endpoint_script.ADMINISTRATORS_SID
    create = _text(_function("New-ProtectedFolder"))
    assert "[System.IO.Directory]::CreateDirectory($Folder, $security)" in create
    # An existing work root keeps its place only with our ACL set again (then checked).
    root = _commands(_function("Assert-WorkRoot"))
    assert root == ["assert-trustedowner", "set-acl", "new-systemonlysecurity", "assert-ownfolder"]
    assert "icacls" not in script_bytes().decode().lower()


def test_every_folder_the_script_writes_to_is_checked_to_be_its_own() -> None:
    """A folder someone else made (a pre-created work root, a planted junction, a job folder
    that exists already) ends the run with status unsafe_folder before anything is done in it."""
    # Created now: an existing one is refused before CreateDirectory, the new one checked after.
    create = _commands(_function("New-ProtectedFolder"))
    assert create[:2] == ["get-folderitem", "stop-unsafefolder"]
    assert create[-1] == "assert-ownfolder"
    creations = [n for n in _nodes("invokation_expression") if "CreateDirectory" in _text(n)]
    assert creations
    assert all(_enclosing_function(n) == "new-protectedfolder" for n in creations)
    # No link, owner SYSTEM or Administrators, no access rule for anyone else.
    owner = _text(_function("Assert-TrustedOwner"))
    assert "[System.IO.FileAttributes]::ReparsePoint" in owner
    assert "GetOwner([System.Security.Principal.SecurityIdentifier])" in owner
    assert "$owner -ne $SystemSid -and $owner -ne $AdministratorsSid" in owner
    assert "GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier])" in _text(
        _function("Assert-OwnFolder")
    )
    # The work root is checked before anything runs in it, and the job folder is never reused.
    job = _commands(_function("Initialize-Job"))
    assert job.index("assert-workroot") < job.index("remove-stalejobs")
    assert job.index("new-protectedfolder") < job.index("remove-stalejobs")
    assert job[-2:] == ["new-protectedfolder", "initialize-collector"]
    assert "remove-tree" not in job
    cleanup = _commands(_function("Invoke-Cleanup"))
    assert cleanup.index("assert-workroot") < cleanup.index("remove-tree")
    restore = _commands(_function("Invoke-RestoreMode"))
    assert restore.index("initialize-job") < restore.index("new-protectedfolder") < restore.index("invoke-restore")


def _enclosing_function(node: Node) -> str | None:
    ancestor = node.parent
    while ancestor is not None:
        if ancestor.type == "function_statement":
            return next(_text(c).lower() for c in ancestor.children if c.type == "function_name")
        ancestor = ancestor.parent
    return None


def test_an_unsafe_folder_is_its_own_status_with_the_reasons_the_emulator_gives() -> None:
    assert "unsafe_folder" in contract.STATUSES
    assert endpoint_script.UNSAFE_FOLDER == "unsafe_folder"
    main = _text(_tree().root_node)
    assert re.search(
        r"if \(\$script:UnsafeFolder\) \{\s*Set-Outcome -Status 'unsafe_folder' -Message \$script:UnsafeFolder", main
    )
    stop = _text(_function("Stop-UnsafeFolder"))
    assert '$script:UnsafeFolder = "$Folder $Reason"' in stop
    assert "throw $script:UnsafeFolder" in stop
    for reason in endpoint_script.UNSAFE_REASONS.values():
        for part in reason.split("{sid}"):
            assert part in main, part


def test_the_keys_in_the_script_are_the_public_keys() -> None:
    assert bytes.fromhex(_assigned_string("$DefangKeyHex")) == DEFANG_KEY
    assert bytes.fromhex(_assigned_string("$DefangKeyHex")) == endpoint_script.DEFANG_KEY
    rc4_key = bytes.fromhex(_assigned_string("$DefenderRc4KeyHex"))
    assert rc4_key == DEFENDER_RC4_KEY
    assert _rc4(rc4_key, bytes(16)).hex() == FIRST_KEYSTREAM_BYTES


def test_the_defender_key_matches_the_reference_notes() -> None:
    if not REFERENCE_DOC.exists():
        pytest.skip("the shared reference notes are not on this machine")
    hex_runs = re.findall(r"`([0-9A-F]{512})`", REFERENCE_DOC.read_text())
    assert hex_runs
    assert bytes.fromhex(hex_runs[0]) == DEFENDER_RC4_KEY


def test_paths_in_the_script_are_the_contract_paths() -> None:
    assert _assigned_string("$WorkRoot") == WORK_ROOT
    assert sample_path("job-1") == WORK_ROOT + "\\job-1\\" + _assigned_string("$SampleFileName")
    assert _assigned_string("$WorkRoot") == endpoint_script.WORK_ROOT
    assert _assigned_string("$SampleFileName") == endpoint_script.SAMPLE_FILE_NAME
    assert "Microsoft\\Windows Defender\\Quarantine\\ResourceData" in _assigned_here_or_joined("$QuarantineData")


def _assigned_here_or_joined(variable: str) -> str:
    """The text of the right-hand side assigned to ``$variable``."""
    for assignment in _nodes("assignment_expression"):
        left = _nodes("variable", assignment.children[0])
        if left and _text(left[0]).lower() == variable.lower():
            return " ".join(_string_literals(assignment.children[-1]))
    raise AssertionError(f"{variable} is not assigned")


def test_quarantine_files_over_the_size_cap_are_skipped() -> None:
    search = _text(_function("Find-InQuarantine"))
    assert "if ($file.Length -gt $MaxFileBytes)" in search
    assert re.search(r"^\$MaxFileBytes = (\d+)$", _text(_tree().root_node), re.MULTILINE)


def test_output_line_has_the_contract_keys_in_order() -> None:
    hashes = [h for h in _nodes("hash_literal_expression") if "joedefender" in _text(h)]
    assert len(hashes) == 1
    keys = [_text(k) for k in _nodes("key_expression", hashes[0])]
    expected = re.findall(r'"(\w+)":', ScriptOutcome(status="cleaned").to_output_line())
    assert keys == expected
    assert keys == list(endpoint_script.OUTPUT_KEYS)
    output = _text(_function("Format-OutputLine"))
    assert "ConvertTo-Json -Compress" in output


def test_exit_codes_follow_the_statuses() -> None:
    code = _text(_tree().root_node)
    assert re.search(r"'not_found'\)\s*\{\s*\$exitCode = " + str(contract.EXIT_NOT_FOUND), code)
    assert re.search(r"'cleaned'\)\s*\{\s*\$exitCode = " + str(contract.EXIT_FOUND), code)
    assert re.search(r"\$exitCode = " + str(contract.EXIT_ERROR) + r"\s*\n\s*if", code)
    assert code.rstrip().endswith("exit $exitCode")
    simulated = (endpoint_script.EXIT_FOUND, endpoint_script.EXIT_ERROR, endpoint_script.EXIT_NOT_FOUND)
    assert simulated == (contract.EXIT_FOUND, contract.EXIT_ERROR, contract.EXIT_NOT_FOUND)


def test_script_name_is_the_library_name() -> None:
    assert contract.script_path().name == SCRIPT_NAME
    assert endpoint_script.SCRIPT_NAME == SCRIPT_NAME


# ---------------------------------------------------------------- quarantine format, pinned in Python


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) & 0xFF])
    return bytes(out)


def _stream(stream_id: int, data: bytes, name: str = "", attributes: int = 0) -> bytes:
    """One WIN32_STREAM_ID header (DWORD id, DWORD attributes, QWORD size, DWORD name size) + data."""
    encoded = name.encode("utf-16-le")
    return struct.pack("<IIQI", stream_id, attributes, len(data), len(encoded)) + encoded + data


def _quarantine_blob(payload: bytes, security_descriptor: bytes, zone: bytes | None) -> bytes:
    plain = _stream(STREAM_SECURITY, security_descriptor, attributes=2) + _stream(STREAM_DATA, payload)
    if zone is not None:
        plain += _stream(STREAM_ALTERNATE, zone, name=":Zone.Identifier:$DATA")
    return _rc4(DEFENDER_RC4_KEY, plain)


def _reference_decode(blob: bytes) -> dict[str, bytes]:
    """Walk every BackupRead stream of a decrypted ResourceData file: {stream name: data}."""
    plain = _rc4(DEFENDER_RC4_KEY, blob)
    streams: dict[str, bytes] = {}
    pos = 0
    while pos + 20 <= len(plain):
        stream_id, _attributes, size, name_size = struct.unpack_from("<IIQI", plain, pos)
        pos += 20
        name = plain[pos : pos + name_size].decode("utf-16-le")
        pos += name_size
        data = plain[pos : pos + size]
        assert len(data) == size, "truncated stream"
        pos += size
        streams[name or {STREAM_DATA: "DATA", STREAM_SECURITY: "SECURITY"}.get(stream_id, str(stream_id))] = data
    assert pos == len(plain)
    return streams


def test_rc4_with_the_defender_key_gives_the_documented_keystream() -> None:
    assert _rc4(DEFENDER_RC4_KEY, bytes(16)).hex() == FIRST_KEYSTREAM_BYTES


@pytest.mark.parametrize("with_zone", [True, False])
def test_reference_decoder_recovers_only_the_data_stream(with_zone: bool) -> None:
    rng = random.Random(7)
    payload = b"MZ" + rng.randbytes(3000)
    security_descriptor = rng.randbytes(164)
    zone = b"[ZoneTransfer]\r\nZoneId=3\r\n" if with_zone else None
    blob = _quarantine_blob(payload, security_descriptor, zone)

    assert blob[:3] == bytes.fromhex("0BAD00")  # as CAPEv2 checks: 03 00 00 00 encrypted
    streams = _reference_decode(blob)
    assert streams["DATA"] == payload
    assert streams["SECURITY"] == security_descriptor
    assert streams.get(":Zone.Identifier:$DATA") == zone
    # The fixed offsets the simpler decoders use (defender-quarantine.md section 2).
    plain = _rc4(DEFENDER_RC4_KEY, blob)
    sd_len = struct.unpack_from("<Q", plain, 8)[0]
    assert struct.unpack_from("<Q", plain, sd_len + 0x1C)[0] == len(payload)
    assert plain[sd_len + 0x28 : sd_len + 0x28 + len(payload)] == payload


# ---------------------------------------------------------------- the script's C# decoder, where Mono is


_HARNESS = r"""
using System;
using System.Security.Cryptography;

public static class Harness
{
    // args: rc4 key hex, defang key hex, then triples (q|p, input, output or "-").
    public static int Main(string[] args)
    {
        byte[] rc4Key = JoeDefender.Collector.FromHex(args[0]);
        byte[] defangKey = JoeDefender.Collector.FromHex(args[1]);
        HashAlgorithm hasher = new SHA256CryptoServiceProvider();
        for (int k = 2; k + 2 < args.Length; k += 3)
        {
            string output = args[k + 2] == "-" ? "" : args[k + 2];
            JoeDefender.Payload payload;
            try
            {
                payload = args[k] == "q"
                    ? JoeDefender.Collector.FromQuarantine(args[k + 1], rc4Key, output, defangKey, hasher)
                    : JoeDefender.Collector.FromPlainFile(args[k + 1], output, defangKey, hasher);
            }
            catch (Exception e)
            {
                Console.WriteLine("error " + e.GetType().Name);
                continue;
            }
            Console.WriteLine(payload == null ? "none" : payload.Sha256 + " " + payload.Size);
        }
        return 0;
    }
}
"""


@pytest.mark.skipif(shutil.which("mcs") is None or shutil.which("mono") is None, reason="Mono is not installed")
def test_embedded_csharp_decoder_on_synthetic_quarantine(tmp_path: Path) -> None:
    (tmp_path / "Collector.cs").write_text(_assigned_here_string("$CollectorSource"))
    (tmp_path / "Harness.cs").write_text(_HARNESS)
    exe = tmp_path / "harness.exe"
    # C# 5 is what Windows PowerShell 5.1's Add-Type compiles.
    subprocess.run(
        ["mcs", "-langversion:5", "-warnaserror", f"-out:{exe}", "Collector.cs", "Harness.cs"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    rng = random.Random(11)
    big = rng.randbytes(2 * 1024 * 1024 + 13)  # crosses the 1 MiB chunk size twice
    cases: list[tuple[str, bytes, str | None]] = [
        ("q", _quarantine_blob(b"MZ" + rng.randbytes(500), rng.randbytes(164), b"[ZoneTransfer]\r\n"), "payload"),
        ("q", _quarantine_blob(big, rng.randbytes(240), None), "payload"),
        ("q", _quarantine_blob(b"", rng.randbytes(100), b"zone"), "payload"),
        ("q", rng.randbytes(4096), None),  # not a quarantine file
        ("q", _rc4(DEFENDER_RC4_KEY, _stream(STREAM_SECURITY, rng.randbytes(64))), None),  # no DATA
        ("q", _quarantine_blob(b"x" * 1000, rng.randbytes(64), None)[:-10], None),  # truncated
        ("p", b"plain restored file" * 999, "plain"),
    ]
    args = ["mono", str(exe), DEFENDER_RC4_KEY.hex(), DEFANG_KEY.hex()]
    for index, (kind, content, _) in enumerate(cases):
        source = tmp_path / f"in{index}"
        source.write_bytes(content)
        args += [kind, str(source), str(tmp_path / f"out{index}")]
    result = subprocess.run(args, check=True, capture_output=True, text=True, timeout=60)
    lines = result.stdout.splitlines()
    assert len(lines) == len(cases)

    for index, ((kind, content, expected), line) in enumerate(zip(cases, lines, strict=True)):
        output = tmp_path / f"out{index}"
        if expected is None:
            assert line == "none", index
            continue
        payload = _reference_decode(content)["DATA"] if kind == "q" else content
        assert line == f"{hashlib.sha256(payload).hexdigest()} {len(payload)}", index
        assert output.read_bytes() == defang(payload), index
        os.remove(output)
