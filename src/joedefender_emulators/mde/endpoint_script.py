"""What ``joedefender-collect.ps1`` does when an emulated endpoint "runs" it through RunScript.

The constants, parameter rules and output line below describe what the real script does on an
endpoint (its param block, its work folder, its one JSON line, its exit codes). They are
deliberately written here independently of the product's endpoint contract
(``src/joedefender/endpoint/contract.py``), so that the tests check one against the other
(and both against the ``.ps1``) instead of one defining the other: a connector that formats
what this simulated script cannot bind fails here as it would on Windows.

The simulation skips only the quarantine decoding: the emulated quarantine holds plain contents.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from joedefender_emulators.errors import EmulatorError

SCRIPT_NAME = "joedefender-collect.ps1"
WORK_ROOT = "C:\\ProgramData\\joedefender"
SAMPLE_FILE_NAME = "sample.bin"
# $DefangKeyHex in the script: the sample is XORed with it on the endpoint's disk.
DEFANG_KEY = bytes.fromhex("5fb389bf97028e347a9c1f073a4ad2f7bad7b7b934fa23e7d86fa685a3e1742e")
EXIT_FOUND = 0  # found, cleaned
EXIT_ERROR = 1  # error, or PowerShell refused the arguments
EXIT_NOT_FOUND = 2
OUTPUT_VERSION = 1
# The keys of the script's output line, in the order ConvertTo-Json writes them.
OUTPUT_KEYS = ("joedefender", "status", "sha256", "size", "path", "source", "message")

SCRIPT_MODES = ("Collect", "Cleanup")
# (parameter, ValidateLength min, max, ValidatePattern) as the script's param block declares
# them, in the order the parameters are bound. Mode is a ValidateSet (SCRIPT_MODES).
_NAME_PART = r'[^\x00-\x1f"*?<>|:/\[\]\\]+'
SCRIPT_PARAMETERS: tuple[tuple[str, int, int, str], ...] = (
    ("JobId", 1, 64, r"^[A-Za-z0-9-]{1,64}\z"),
    ("Sha256", 64, 64, r"^[0-9a-fA-F]{64}\z"),
    ("ThreatName", 1, 256, r'^[^\x00-\x1f\x7f"]+\z'),
    ("OriginalPath", 4, 1024, "^[A-Za-z]:\\\\(?:" + _NAME_PART + "\\\\)*" + _NAME_PART + r"\z"),
)

# What PowerShell's tokenizer takes for a single quote: ASCII ' and U+2018 to U+201B.
_QUOTES = frozenset("'\u2018\u2019\u201a\u201b")
_BLANKS = " \t"
_NAME = re.compile(r"-([A-Za-z0-9]+)")


class EndpointScriptError(EmulatorError):
    """PowerShell would not bind these arguments, or a RunScript result document is malformed."""


def parse_args(args: str) -> dict[str, str]:
    """Bind ``args`` as PowerShell binds them to the script's param block; returns the bound
    parameters by name (the script's ``$PSBoundParameters``).

    Only ``-Name 'verbatim string'`` pairs are taken (what a safe caller sends); anything else
    (bare words, unknown or repeated parameters, unquoted values) is refused, as is a value the
    param block's validation attributes refuse. The body's own checks are simulate's.
    """
    bound: dict[str, str] = {}
    for name, value in _tokenise(args):
        if name not in ("Mode", *(p[0] for p in SCRIPT_PARAMETERS)):
            raise EndpointScriptError(f"unknown parameter -{name}")
        if name in bound:
            raise EndpointScriptError(f"parameter -{name} given more than once")
        bound[name] = value
    for required in ("Mode", "JobId"):
        if required not in bound:
            raise EndpointScriptError(f"parameter -{required} is missing")
    if bound["Mode"] not in SCRIPT_MODES:
        raise EndpointScriptError(f"Mode must be one of {', '.join(SCRIPT_MODES)}")
    for name, shortest, longest, pattern in SCRIPT_PARAMETERS:
        if name in bound:
            _validate(name, bound[name], shortest, longest, pattern)
    return bound


def _validate(name: str, value: str, shortest: int, longest: int, pattern: str) -> None:
    """ValidateLength (in UTF-16 code units, as .NET counts) then ValidatePattern (case-insensitive)."""
    try:
        units = len(value.encode("utf-16-le")) // 2
    except UnicodeEncodeError:
        raise EndpointScriptError(f"{name} is not valid Unicode text") from None
    if units < shortest or units > longest:
        raise EndpointScriptError(f"{name} must be {shortest} to {longest} characters long, got {units}")
    # .NET's \z (the very end) is Python's \Z.
    if not re.search(pattern.replace(r"\z", r"\Z"), value, re.IGNORECASE):
        raise EndpointScriptError(f"{name} must match the pattern {pattern}")


def _tokenise(args: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    at = _after_blanks(args, 0)
    while at < len(args):
        found = _NAME.match(args, at)
        if found is None:
            raise EndpointScriptError(f"expected a parameter name at offset {at}")
        name, at = found.group(1), found.end()
        if at >= len(args) or args[at] not in _BLANKS:
            raise EndpointScriptError(f"expected a blank after -{name}")
        at = _after_blanks(args, at)
        if at >= len(args) or args[at] not in _QUOTES:
            raise EndpointScriptError(f"the value of -{name} must be a single-quoted string")
        value, at = _verbatim_string(args, at + 1, name)
        pairs.append((name, value))
        at = _after_blanks(args, at)
    return pairs


def _after_blanks(text: str, at: int) -> int:
    while at < len(text) and text[at] in _BLANKS:
        at += 1
    return at


def _verbatim_string(text: str, at: int, name: str) -> tuple[str, int]:
    """The body of a verbatim string starting at ``at``: a doubled quote is one quote (the second
    one kept, as PowerShell keeps it); returns the value and the offset after the closing quote."""
    value: list[str] = []
    while at < len(text):
        if text[at] not in _QUOTES:
            value.append(text[at])
            at += 1
        elif at + 1 < len(text) and text[at + 1] in _QUOTES:
            value.append(text[at + 1])
            at += 2
        else:
            at += 1
            if at < len(text) and text[at] not in _BLANKS:
                raise EndpointScriptError(f"unexpected text after the value of -{name}")
            return "".join(value), at
    raise EndpointScriptError(f"the value of -{name} has no closing quote")


def defanged(content: bytes) -> bytes:
    """The sample as the script leaves it on disk: XORed with DEFANG_KEY from its first byte."""
    repeats = len(content) // len(DEFANG_KEY) + 1
    keystream = (DEFANG_KEY * repeats)[: len(content)]
    return (int.from_bytes(content, "big") ^ int.from_bytes(keystream, "big")).to_bytes(len(content), "big")


def output_line(
    status: str,
    *,
    sha256: str | None = None,
    size: int | None = None,
    path: str | None = None,
    source: str | None = None,
    message: str = "",
) -> str:
    """The one JSON line the script prints (compact, keys in the script's order)."""
    values = (OUTPUT_VERSION, status, sha256, size, path, source, message)
    return json.dumps(dict(zip(OUTPUT_KEYS, values, strict=True)), separators=(",", ":"))


def _exit_code(status: str) -> int:
    if status in ("found", "cleaned"):
        return EXIT_FOUND
    return EXIT_NOT_FOUND if status == "not_found" else EXIT_ERROR


@dataclass(frozen=True)
class QuarantinedItem:
    """What a simulated endpoint's Defender quarantine holds for one detected file."""

    threat_name: str
    original_path: str
    content: bytes


class SimulatedEndpoint(Protocol):
    """The little of an emulated Windows machine that simulate() touches."""

    def quarantine(self) -> Sequence[QuarantinedItem]: ...

    def write_file(self, path: str, content: bytes) -> None: ...

    def delete_tree(self, folder: str) -> None:
        """Delete ``folder`` and everything under it; paths compare case-insensitively."""
        ...


@dataclass(frozen=True)
class ScriptRun:
    """A RunScript result: the fields of live response's result JSON."""

    exit_code: int
    script_output: str
    script_errors: str

    def to_result(self) -> dict[str, object]:
        """The live response RunScript result document for this run."""
        return {
            "script_name": SCRIPT_NAME,
            "exit_code": self.exit_code,
            "script_output": self.script_output,
            "script_errors": self.script_errors,
        }

    @classmethod
    def from_result(cls, document: Mapping[str, object]) -> ScriptRun:
        exit_code = document.get("exit_code")
        if not isinstance(exit_code, int) or isinstance(exit_code, bool):
            raise EndpointScriptError("the RunScript result has no integer exit_code")
        output = document.get("script_output") or ""
        errors = document.get("script_errors") or ""
        if not isinstance(output, str) or not isinstance(errors, str):
            raise EndpointScriptError("script_output and script_errors must be strings")
        return cls(exit_code=exit_code, script_output=output, script_errors=errors)


def simulate(args: str, endpoint: SimulatedEndpoint) -> ScriptRun:
    """Do on an emulated endpoint what the real script does on Windows."""
    try:
        bound = parse_args(args)
    except EndpointScriptError as exc:
        # PowerShell refuses to bind the parameters: no output line, exit code 1.
        return ScriptRun(EXIT_ERROR, "", f"{SCRIPT_NAME} : Cannot validate the arguments: {exc}")
    folder = f"{WORK_ROOT}\\{bound['JobId']}"
    if bound["Mode"] == "Cleanup":
        endpoint.delete_tree(folder)
        return _finished("cleaned")
    if "Sha256" not in bound:
        return _finished("error", message="Sha256 is required in Collect mode")
    wanted = bound["Sha256"].lower()
    endpoint.delete_tree(folder)
    for item in endpoint.quarantine():
        if hashlib.sha256(item.content).hexdigest() == wanted:
            path = f"{folder}\\{SAMPLE_FILE_NAME}"
            endpoint.write_file(path, defanged(item.content))
            return _finished("found", sha256=wanted, size=len(item.content), path=path, source="quarantine")
    return _finished("not_found", message="no quarantined file has this SHA-256")


def _finished(status: str, **fields: Any) -> ScriptRun:
    return ScriptRun(_exit_code(status), output_line(status, **fields) + "\n", "")
