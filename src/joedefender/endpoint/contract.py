"""The contract between the connector and the endpoint library scripts.

``joedefender-locate.ps1`` (read-only: lists the quarantine's Entries and ResourceData files) and
``joedefender-collect.ps1`` (decodes on the endpoint, or restores when allowed, or cleans up)
run as SYSTEM on a Windows endpoint through live response. The connector builds their arguments
and reads their one JSON output line with this module; the tests check the ``.ps1`` files
against the rules below, and check this module against the MDE emulator's simulated endpoint
(``joedefender_emulators.mde.endpoint_script``), which describes the same scripts independently.

How live response hands ``Args`` to a script is not documented (the PowerShell parser, ``-File``,
or through ``cmd.exe``). So every argument is made of ``[A-Za-z0-9-]`` only, which means the same
in all three: paths (attacker-chosen) travel hex-encoded, and nothing needs quoting.
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
LOCATE_SCRIPT_NAME = "joedefender-locate.ps1"
QUARANTINE_ROOT = r"C:\ProgramData\Microsoft\Windows Defender\Quarantine"
WORK_ROOT = r"C:\ProgramData\joedefender"
SAMPLE_FILE_NAME = "sample.bin"

# Not a secret: it only keeps the sample inert on the endpoint's disk (real-time protection does
# not act on it, and it cannot run) until GetFile has fetched it. Arbitrary fixed bytes with no
# 0x00, so every byte of the sample changes.
DEFANG_KEY = bytes.fromhex("5fb389bf97028e347a9c1f073a4ad2f7bad7b7b934fa23e7d86fa685a3e1742e")

EXIT_FOUND, EXIT_ERROR, EXIT_NOT_FOUND = 0, 1, 2

Mode = Literal["Collect", "Restore", "Cleanup"]
# unsafe_folder: a folder the script must write to is not its own (someone else made it, or it is
# a junction); the script did nothing there, and says why in its message.
Status = Literal["found", "not_found", "error", "cleaned", "unsafe_folder"]
Source = Literal["quarantine", "restore"]
MODES: tuple[str, ...] = get_args(Mode)
STATUSES: tuple[str, ...] = get_args(Status)
SOURCES: tuple[str, ...] = get_args(Source)
OUTPUT_VERSION = 1
# The locator lists at most this many ResourceData files, and as many Entries files (newest first).
LOCATE_LIMIT = 64
# The scripts print one line: the locator's, the longest, lists 128 files of about 120 characters
# each and carries Entries files of at most 256 KiB in hex (`locate_contract`). A megabyte leaves
# room for PowerShell's own warnings; more did not come from our scripts (the device is the
# attacker's side) and is refused unread.
MAX_SCRIPT_OUTPUT_CHARS = 1 << 20
# The scripts cut their message to this many characters; a longer one is cut here the same way.
MAX_MESSAGE_CHARS = 1000
_MAX_PATH_CHARS = 32_767  # the longest Windows path
_LINE = re.compile(r"[^\r\n]+")
# Every argument, whatever the parameter: what survives any tokenisation of Args.
_SAFE_ARGUMENT = re.compile(r"[A-Za-z0-9-]+")


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
            length = len(value.encode("utf-16-le")) // 2
        except UnicodeEncodeError:
            raise ContractError(f"{self.name} is not valid Unicode text") from None
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

# Rules of the collect script's parameters, in the order format_args emits them (Mode is a
# ValidateSet). Each pattern admits only [A-Za-z0-9-].
PARAMETER_RULES: Mapping[str, ParameterRule] = {
    rule.name: rule
    for rule in (
        ParameterRule("JobId", 1, 64, r"^[A-Za-z0-9-]{1,64}\z"),
        ParameterRule("Sha256", 64, 64, r"^[0-9a-fA-F]{64}\z"),
        # The original path's UTF-8 bytes in hex (1024 UTF-16 units are at most 3072 bytes).
        ParameterRule("OriginalPathHex", 8, 6144, r"^(?:[0-9a-fA-F]{2}){4,3072}\z"),
    )
}
PARAMETER_NAMES: tuple[str, ...] = ("Mode", *PARAMETER_RULES)
# The locate script's parameters.
LOCATE_PARAMETER_RULES: Mapping[str, ParameterRule] = {"JobId": PARAMETER_RULES["JobId"]}
# What the collect script's body requires of the decoded path before MpCmdRun sees it: an
# absolute drive path; no wildcard characters, so MpCmdRun cannot match several entries; no
# double quote or trailing backslash, which Windows PowerShell 5.1 would pass on unescaped.
ORIGINAL_PATH_RULE = ParameterRule("OriginalPath", 4, 1024, rf"^[A-Za-z]:\\(?:{_PATH_PART}\\)*{_PATH_PART}\z")


@dataclass(frozen=True)
class CollectRequest:
    """One run of the collect script: decode a quarantined sample into a job folder (Collect),
    restore it with MpCmdRun (Restore, opt-in), or clean the job folder up."""

    mode: Mode
    job_id: str
    sha256: str | None = None
    original_path: str | None = None  # Restore only; sent hex-encoded

    def validate(self) -> None:
        """Apply the script's own rules, so a bad request fails here rather than on the endpoint."""
        if self.mode not in MODES:
            raise ContractError(f"Mode must be one of {', '.join(MODES)}")
        if self.original_path is not None:
            ORIGINAL_PATH_RULE.check(self.original_path)
        for name, value in self._values():
            if name != "Mode":
                PARAMETER_RULES[name].check(value)
        if self.mode != "Cleanup" and self.sha256 is None:
            raise ContractError(f"Sha256 is required in {self.mode} mode")
        if self.mode == "Restore" and self.original_path is None:
            raise ContractError("OriginalPath is required in Restore mode")

    def _values(self) -> list[tuple[str, str]]:
        """The parameters that are set, in emission order, as sent."""
        values = {
            "Mode": self.mode,
            "JobId": self.job_id,
            "Sha256": self.sha256,
            "OriginalPathHex": None if self.original_path is None else self.original_path.encode("utf-8").hex(),
        }
        return [(name, value) for name, value in values.items() if value is not None]


def script_path(name: str = SCRIPT_NAME) -> Traversable:
    """A bundled script, as package data (uploaded to the live response library as is)."""
    return importlib.resources.files("joedefender.endpoint").joinpath("scripts", name)


def script_bytes(name: str = SCRIPT_NAME) -> bytes:
    return script_path(name).read_bytes()


def join_args(values: list[tuple[str, str]]) -> str:
    args = " ".join(f"-{name} {value}" for name, value in values)
    if not all(_SAFE_ARGUMENT.fullmatch(word) for word in args.split(" ")):  # the patterns make this so
        raise ContractError("an argument holds a character outside [A-Za-z0-9-]")
    # A value starting with a dash would be read as a parameter name ("-JobId -Mode" leaves JobId
    # without a value): the patterns allow one in JobId, so it is refused here.
    for name, value in values:
        if value.startswith("-"):
            raise ContractError(f"{name} must not start with a dash")
    return args


def format_args(request: CollectRequest) -> str:
    """The RunScript ``Args`` value for ``request``; raises ContractError if the script would refuse it."""
    request.validate()
    return join_args(request._values())


def format_locate_args(job_id: str) -> str:
    """The ``Args`` of the locate script: only the job id, for live response's own log."""
    LOCATE_PARAMETER_RULES["JobId"].check(job_id)
    return join_args([("JobId", job_id)])


def resource_data_root() -> str:
    return f"{QUARANTINE_ROOT}\\ResourceData"


def entries_root() -> str:
    return f"{QUARANTINE_ROOT}\\Entries"


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
        return cls._from_document(our_line(script_output))

    @classmethod
    def _from_document(cls, doc: Mapping[str, object]) -> ScriptOutcome:
        check_version(doc)
        status = doc.get("status")
        source = doc.get("source")
        size = doc.get("size")
        message = doc.get("message", "")
        if status not in STATUSES:
            raise ContractError(f"unknown status {brief(status)}")
        if source is not None and source not in SOURCES:
            raise ContractError(f"unknown source {brief(source)}")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise ContractError("size must be an integer")
        if message is None:
            message = ""
        if not isinstance(message, str):
            raise ContractError("message must be a string")
        path = _optional_str(doc, "path")
        if path is not None and len(path) > _MAX_PATH_CHARS:
            raise ContractError(f"path has {len(path)} characters, more than a Windows path can")
        return cls(
            status=status,  # type: ignore[arg-type]  # checked against STATUSES above
            sha256=_optional_str(doc, "sha256"),
            size=size,
            path=path,
            source=source,  # type: ignore[arg-type]  # checked against SOURCES above
            message=message[:MAX_MESSAGE_CHARS],
        )


def our_line(script_output: str) -> dict[str, object]:
    """The one joedefender line among whatever else the endpoint printed: read line by line, in
    one pass, keeping nothing of the other lines."""
    if len(script_output) > MAX_SCRIPT_OUTPUT_CHARS:
        raise ContractError(
            f"the script output has {len(script_output)} characters, more than the {MAX_SCRIPT_OUTPUT_CHARS} "
            "our scripts can print"
        )
    ours: dict[str, object] | None = None
    count = 0
    for line in _LINE.finditer(script_output):
        doc = _json_object(line.group())
        if doc is not None and "joedefender" in doc:
            ours, count = ours or doc, count + 1
    if ours is None:
        raise ContractError("the script output has no joedefender result line")
    if count > 1:
        raise ContractError(f"the script output has {count} joedefender result lines, expected one")
    return ours


def _json_object(line: str) -> dict[str, object] | None:
    text = line.strip().lstrip("\ufeff")
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return None
    return value if isinstance(value, dict) else None


def check_version(doc: Mapping[str, object]) -> None:
    if doc.get("joedefender") != OUTPUT_VERSION:
        raise ContractError(f"unsupported joedefender output version {brief(doc.get('joedefender'))}")


def brief(value: object) -> str:
    """A value from the device in an error message: its repr, bounded."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _optional_str(doc: Mapping[str, object], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise ContractError(f"{key} must be a string")
    return value
