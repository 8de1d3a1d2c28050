"""The contract between the connector and the endpoint collection script.

``joedefender-collect.ps1`` runs as SYSTEM on a Windows endpoint through live response. The
connector builds its arguments and reads its one JSON output line with this module; the tests
check the ``.ps1`` against the rules below, and check this module against the MDE emulator's
simulated endpoint (``joedefender_emulators.mde.endpoint_script``), which describes the same
script independently.

Everything passed to the script may come from the attacker's side (threat names, file paths),
so every value is validated here with the same rules as the script's ``param`` block, and
quoted as a PowerShell verbatim string so that it is only ever data.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources.abc import Traversable
from typing import Literal, get_args

from joedefender.domain.errors import JoeDefenderError

SCRIPT_NAME = "joedefender-collect.ps1"
WORK_ROOT = r"C:\ProgramData\joedefender"
SAMPLE_FILE_NAME = "sample.bin"

# Not a secret: it only keeps the sample inert on the endpoint's disk (real-time protection does
# not act on it, and it cannot run) until GetFile has fetched it. Arbitrary fixed bytes with no
# 0x00, so every byte of the sample changes.
DEFANG_KEY = bytes.fromhex("5fb389bf97028e347a9c1f073a4ad2f7bad7b7b934fa23e7d86fa685a3e1742e")

EXIT_FOUND, EXIT_ERROR, EXIT_NOT_FOUND = 0, 1, 2

Mode = Literal["Collect", "Cleanup"]
Status = Literal["found", "not_found", "error", "cleaned"]
Source = Literal["quarantine", "restore"]
MODES: tuple[str, ...] = get_args(Mode)
STATUSES: tuple[str, ...] = get_args(Status)
SOURCES: tuple[str, ...] = get_args(Source)
OUTPUT_VERSION = 1

# Characters PowerShell's tokenizer takes as a single quote; inside a verbatim string each one
# is escaped by doubling it.
_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"


class ContractError(JoeDefenderError):
    """Arguments the script would refuse, or script output that does not follow the contract."""


@dataclass(frozen=True)
class ParameterRule:
    """One string parameter of the script: its ``ValidateLength`` and ``ValidatePattern``.

    ``pattern`` is the .NET regular expression exactly as written in the script (PowerShell
    matches it case-insensitively; ``\\z`` is the absolute end, so a trailing newline cannot
    slip past ``$``). Lengths count UTF-16 code units, as .NET does.
    """

    name: str
    min_length: int
    max_length: int
    pattern: str

    def check(self, value: str) -> None:
        """Raise ContractError unless PowerShell would bind ``value`` to this parameter."""
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ContractError(f"{self.name} is not valid Unicode text") from None
        length = len(value.encode("utf-16-le")) // 2
        if not self.min_length <= length <= self.max_length:
            raise ContractError(
                f"{self.name} must be {self.min_length} to {self.max_length} characters long, got {length}"
            )
        if _python_regex(self.pattern).search(value) is None:
            raise ContractError(f"{self.name} must match the pattern {self.pattern}")


@cache
def _python_regex(dotnet_pattern: str) -> re.Pattern[str]:
    """Translate the few .NET-only escapes our patterns use (``\\z``) into Python's spelling."""
    return re.compile(dotnet_pattern.replace(r"\z", r"\Z"), re.IGNORECASE)


_PATH_PART = r'[^\x00-\x1f"*?<>|:/\[\]\\]+'

# Rules of the script's parameters, in the order format_args emits them (Mode is a ValidateSet).
PARAMETER_RULES: Mapping[str, ParameterRule] = {
    rule.name: rule
    for rule in (
        ParameterRule("JobId", 1, 64, r"^[A-Za-z0-9-]{1,64}\z"),
        ParameterRule("Sha256", 64, 64, r"^[0-9a-fA-F]{64}\z"),
        ParameterRule("ThreatName", 1, 256, r'^[^\x00-\x1f\x7f"]+\z'),
        # An absolute drive path; no wildcard characters, so MpCmdRun cannot match several
        # entries; no double quote or trailing backslash, which Windows PowerShell 5.1 would
        # pass to MpCmdRun unescaped.
        ParameterRule("OriginalPath", 4, 1024, rf"^[A-Za-z]:\\(?:{_PATH_PART}\\)*{_PATH_PART}\z"),
    )
}
PARAMETER_NAMES: tuple[str, ...] = ("Mode", *PARAMETER_RULES)

_FIELD_BY_PARAMETER = {
    "Mode": "mode",
    "JobId": "job_id",
    "Sha256": "sha256",
    "ThreatName": "threat_name",
    "OriginalPath": "original_path",
}


@dataclass(frozen=True)
class CollectRequest:
    """One run of the script: collect a quarantined sample into a job folder, or clean it up."""

    mode: Mode
    job_id: str
    sha256: str | None = None
    threat_name: str | None = None
    original_path: str | None = None

    def validate(self) -> None:
        """Apply the script's own rules, so a bad request fails here rather than on the endpoint."""
        if self.mode not in MODES:
            raise ContractError(f"Mode must be one of {', '.join(MODES)}")
        for name, value in self._values():
            if name != "Mode":
                PARAMETER_RULES[name].check(value)
        if self.mode == "Collect" and self.sha256 is None:
            raise ContractError("Sha256 is required in Collect mode")

    def _values(self) -> list[tuple[str, str]]:
        """The parameters that are set, in emission order."""
        pairs: list[tuple[str, str]] = []
        for name in PARAMETER_NAMES:
            value = getattr(self, _FIELD_BY_PARAMETER[name])
            if value is not None:
                pairs.append((name, value))
        return pairs


def script_path() -> Traversable:
    """The bundled script, as package data (uploaded to the live response library as is)."""
    return importlib.resources.files("joedefender.endpoint").joinpath("scripts", SCRIPT_NAME)


def script_bytes() -> bytes:
    return script_path().read_bytes()


def _quote(value: str) -> str:
    """A PowerShell verbatim string: nothing inside is expanded, quotes are doubled."""
    return "'" + "".join(ch * 2 if ch in _SINGLE_QUOTES else ch for ch in value) + "'"


def format_args(request: CollectRequest) -> str:
    """The RunScript ``Args`` value for ``request``; raises ContractError if the script would refuse it."""
    request.validate()
    return " ".join(f"-{name} {_quote(value)}" for name, value in request._values())


def job_folder(job_id: str) -> str:
    PARAMETER_RULES["JobId"].check(job_id)
    return f"{WORK_ROOT}\\{job_id}"


def sample_path(job_id: str) -> str:
    return f"{job_folder(job_id)}\\{SAMPLE_FILE_NAME}"


def defang(data: bytes, offset: int = 0) -> bytes:
    """XOR ``data`` with DEFANG_KEY, as if it started at ``offset`` of the whole stream.

    The same call undoes it. Works on big chunks at C speed (one big-integer XOR).
    """
    if offset < 0:
        raise ValueError("offset must not be negative")
    if not data:
        return b""
    start = offset % len(DEFANG_KEY)
    rotated = DEFANG_KEY[start:] + DEFANG_KEY[:start]
    keystream = (rotated * (len(data) // len(rotated) + 1))[: len(data)]
    mixed = int.from_bytes(data, "little") ^ int.from_bytes(keystream, "little")
    return mixed.to_bytes(len(data), "little")


class Refanger:
    """Undoes defang on a stream that arrives in chunks of any size."""

    def __init__(self) -> None:
        self.offset = 0

    def feed(self, chunk: bytes) -> bytes:
        plain = defang(chunk, self.offset)
        self.offset += len(chunk)
        return plain


_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ScriptOutcome:
    """The script's one machine-readable stdout line."""

    status: Status
    sha256: str | None = None
    size: int | None = None
    path: str | None = None
    source: Source | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ContractError(f"unknown status {self.status!r}")
        if self.source is not None and self.source not in SOURCES:
            raise ContractError(f"unknown source {self.source!r}")
        if self.sha256 is not None and _SHA256_RE.fullmatch(self.sha256) is None:
            raise ContractError("sha256 must be 64 lowercase hex digits")
        if self.size is not None and (isinstance(self.size, bool) or self.size < 0):
            raise ContractError("size must be a non-negative integer")
        if self.status == "found" and None in (self.sha256, self.size, self.path, self.source):
            raise ContractError("a found outcome needs sha256, size, path and source")

    @property
    def exit_code(self) -> int:
        """The exit code the script ends with for this outcome."""
        return {"found": EXIT_FOUND, "cleaned": EXIT_FOUND, "not_found": EXIT_NOT_FOUND}.get(self.status, EXIT_ERROR)

    def to_output_line(self) -> str:
        document = {
            "joedefender": OUTPUT_VERSION,
            "status": self.status,
            "sha256": self.sha256,
            "size": self.size,
            "path": self.path,
            "source": self.source,
            "message": self.message,
        }
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def from_script_output(cls, script_output: str) -> ScriptOutcome:
        """Find the one joedefender line among whatever else the endpoint printed."""
        documents = [doc for doc in map(_json_object, script_output.splitlines()) if doc is not None]
        ours = [doc for doc in documents if "joedefender" in doc]
        if not ours:
            raise ContractError("the script output has no joedefender result line")
        if len(ours) > 1:
            raise ContractError(f"the script output has {len(ours)} joedefender result lines, expected one")
        return cls._from_document(ours[0])

    @classmethod
    def _from_document(cls, doc: Mapping[str, object]) -> ScriptOutcome:
        if doc.get("joedefender") != OUTPUT_VERSION:
            raise ContractError(f"unsupported joedefender output version {doc.get('joedefender')!r}")
        status = doc.get("status")
        source = doc.get("source")
        size = doc.get("size")
        message = doc.get("message", "")
        if status not in STATUSES:
            raise ContractError(f"unknown status {status!r}")
        if source is not None and source not in SOURCES:
            raise ContractError(f"unknown source {source!r}")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise ContractError("size must be an integer")
        if message is None:
            message = ""
        if not isinstance(message, str):
            raise ContractError("message must be a string")
        return cls(
            status=status,  # type: ignore[arg-type]  # checked against STATUSES above
            sha256=_optional_str(doc, "sha256"),
            size=size,
            path=_optional_str(doc, "path"),
            source=source,  # type: ignore[arg-type]  # checked against SOURCES above
            message=message,
        )


def _json_object(line: str) -> dict[str, object] | None:
    text = line.strip().lstrip("\ufeff")
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _optional_str(doc: Mapping[str, object], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise ContractError(f"{key} must be a string")
    return value
