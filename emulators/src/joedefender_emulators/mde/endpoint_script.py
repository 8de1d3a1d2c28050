"""What the library scripts do when an emulated endpoint "runs" them through RunScript.

``joedefender-collect.ps1`` (decode on the endpoint, or restore, or clean up) and
``joedefender-locate.ps1`` (read-only: list the quarantine's ResourceData and Entries files). The constants,
parameter rules and output lines below describe what the real scripts do on an endpoint (their
param blocks, work folder, JSON lines, exit codes). They are deliberately written here
independently of the product's endpoint contract (``src/joedefender/endpoint/contract.py``), so
that the tests check one against the other (and both against the ``.ps1``) instead of one
defining the other: a connector that formats what these simulated scripts cannot bind fails here
as it would on Windows.

The quarantine is in Defender's encrypted layout (``quarantine.py``); the simulated collect
script decodes it with that module's own reader. Its folder checks follow the script's
functions of the same names (Initialize-Job, Assert-WorkRoot, New-ProtectedFolder,
Assert-OwnFolder): a work root or job folder someone else made ends the run with status
``unsafe_folder`` before anything is written there.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from joedefender_emulators.errors import EmulatorError
from joedefender_emulators.mde import command_line
from joedefender_emulators.mde import quarantine as store

SCRIPT_NAME = "joedefender-collect.ps1"
LOCATE_SCRIPT_NAME = "joedefender-locate.ps1"
WORK_ROOT = "C:\\ProgramData\\joedefender"
SAMPLE_FILE_NAME = "sample.bin"
# $DefangKeyHex in the script: the sample is XORed with it on the endpoint's disk.
DEFANG_KEY = bytes.fromhex("5fb389bf97028e347a9c1f073a4ad2f7bad7b7b934fa23e7d86fa685a3e1742e")
EXIT_FOUND = 0  # found, cleaned, located
EXIT_ERROR = 1  # error, or PowerShell refused the arguments
EXIT_NOT_FOUND = 2
OUTPUT_VERSION = 1
# The keys of the collect script's output line, in the order ConvertTo-Json writes them.
OUTPUT_KEYS = ("joedefender", "status", "sha256", "size", "path", "source", "message")
LOCATE_KEYS = ("joedefender", "status", "languageMode", "resources", "entries", "message")
# The emulated endpoints run Full Language (what a machine without WDAC or AppLocker has).
LANGUAGE_MODE = "FullLanguage"
LOCATE_LIMIT = 64  # the locator lists at most this many ResourceData files, and Entries files, newest first
# The locator prints an Entries file's bytes (hex, key "hex") when it is at most LOCATE_PRINT_EACH
# bytes and the ones printed before it (newest first) leave room within LOCATE_PRINT_TOTAL.
LOCATE_PRINT_EACH = 64 * 1024
LOCATE_PRINT_TOTAL = 256 * 1024

SCRIPT_MODES = ("Collect", "Restore", "Cleanup")
# (parameter, ValidateLength min, max, ValidatePattern) as the collect script's param block
# declares them, in the order the parameters are bound. Mode is a ValidateSet (SCRIPT_MODES).
# Every value is made of [A-Za-z0-9-] only: it means the same however Args is tokenised.
SCRIPT_PARAMETERS: tuple[tuple[str, int, int, str], ...] = (
    ("JobId", 1, 64, r"^[A-Za-z0-9-]{1,64}\z"),
    ("Sha256", 64, 64, r"^[0-9a-fA-F]{64}\z"),
    ("OriginalPathHex", 8, 6144, r"^(?:[0-9a-fA-F]{2}){4,3072}\z"),
)
LOCATE_PARAMETERS: tuple[tuple[str, int, int, str], ...] = (("JobId", 1, 64, r"^[A-Za-z0-9-]{1,64}\z"),)
# What the collect script's body requires of the decoded OriginalPathHex before MpCmdRun sees it:
# an absolute drive path without wildcards, quotes or a trailing backslash.
_NAME_PART = r'[^\x00-\x1f"*?<>|:/\[\]\\]+'
ORIGINAL_PATH_PATTERN = "^[A-Za-z]:\\\\(?:" + _NAME_PART + "\\\\)*" + _NAME_PART + r"\z"
SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"
# The status line of a run that found a folder it must write to not to be its own, and the
# reasons it gives (the script's Stop-UnsafeFolder messages, after the folder's path).
UNSAFE_FOLDER = "unsafe_folder"
UNSAFE_REASONS = {
    "junction": "is a reparse point (a junction or link); refusing to use it",
    "file": "is not a folder; refusing to use it",
    "owner": "is owned by {sid}, not SYSTEM or Administrators: someone else made it; refusing to use it",
    "access": "grants access to {sid}; refusing to use it",
    "existed": "existed before this run; refusing to use it",
}


class EndpointScriptError(EmulatorError):
    """PowerShell would not bind these arguments, or a RunScript result document is malformed."""


def parse_args(args: str, parameters: Sequence[tuple[str, int, int, str]] = SCRIPT_PARAMETERS) -> dict[str, str]:
    """Bind ``args`` to a script's param block; returns the bound parameters by name.

    ``args`` is split and bound as a Windows endpoint would (``command_line``: the C runtime's
    quoting rules, then PowerShell's ``-Name value`` binding), then the param block's own checks
    apply: Mode and JobId are mandatory, Mode is a ValidateSet (case-insensitive, as PowerShell's
    is), the others have ValidateLength and ValidatePattern. The body's own checks are simulate's.
    """
    with_mode = parameters is SCRIPT_PARAMETERS
    declared = [p[0] for p in parameters] + (["Mode"] if with_mode else [])
    try:
        bound = command_line.bind(args, declared)
    except command_line.BindingError as exc:
        raise EndpointScriptError(str(exc)) from None
    required = ("Mode", "JobId") if with_mode else ("JobId",)
    for name in required:
        if name not in bound:
            raise EndpointScriptError(f"parameter -{name} is missing")
    if with_mode:
        mode = next((m for m in SCRIPT_MODES if m.lower() == bound["Mode"].lower()), None)
        if mode is None:
            raise EndpointScriptError(f"Mode must be one of {', '.join(SCRIPT_MODES)}")
        bound["Mode"] = mode
    for name, shortest, longest, pattern in parameters:
        if name in bound:
            _validate(name, bound[name], shortest, longest, pattern)
    return bound


def _validate(name: str, value: str, shortest: int, longest: int, pattern: str) -> None:
    """ValidateLength (in UTF-16 code units, as .NET counts) then ValidatePattern (case-insensitive)."""
    length = len(value.encode("utf-16-le", errors="surrogatepass")) // 2
    if length < shortest or length > longest:
        raise EndpointScriptError(f"{name} must be {shortest} to {longest} characters long, got {length}")
    # .NET's \z (the very end) is Python's \Z.
    if not re.search(pattern.replace(r"\z", r"\Z"), value, re.IGNORECASE):
        raise EndpointScriptError(f"{name} must match the pattern {pattern}")


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
class QuarantineFile:
    """A file of the simulated endpoint's Quarantine folder, as Get-ChildItem lists it."""

    path: str
    size: int


@dataclass(frozen=True)
class FolderState:
    """What the collect script checks of a folder: its owner's SID, the SIDs its access rules
    name, and whether it is a reparse point (a junction, and where it leads)."""

    path: str
    owner: str
    access: tuple[str, ...]
    junction_to: str | None = None


class SimulatedEndpoint(Protocol):
    """The little of an emulated Windows machine that the simulated scripts touch."""

    def folder(self, path: str) -> FolderState | None:
        """The folder at ``path`` (the link itself if it is a junction), or None."""
        ...

    def make_folder(self, path: str, owner: str, access: tuple[str, ...]) -> None:
        """[IO.Directory]::CreateDirectory with a security descriptor (nothing if it exists)."""
        ...

    def set_access(self, path: str, access: tuple[str, ...]) -> None:
        """Set-Acl: the folder's access rules, and its owner, become the script's."""
        ...

    def resource_files(self) -> Sequence[QuarantineFile]:
        """The Quarantine\\ResourceData files, newest first."""
        ...

    def entries_files(self) -> Sequence[QuarantineFile]:
        """The Quarantine\\Entries files, newest first."""
        ...

    def read_quarantine_file(self, path: str) -> Iterator[bytes]: ...

    def restore(self, original_path: str, destination: str) -> list[str]:
        """MpCmdRun -Restore -FilePath: takes the entries of that path out of the quarantine and
        writes their plaintext under ``destination``; returns the paths written."""
        ...

    def read_file(self, path: str) -> bytes | None: ...

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
    script_name: str = SCRIPT_NAME

    def to_result(self) -> dict[str, object]:
        """The live response RunScript result document for this run."""
        return {
            "script_name": self.script_name,
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
        name = document.get("script_name")
        return cls(exit_code, output, errors, name if isinstance(name, str) else SCRIPT_NAME)


def simulate(args: str, endpoint: SimulatedEndpoint) -> ScriptRun:
    """Do on an emulated endpoint what the real collect script does on Windows."""
    try:
        bound = parse_args(args)
    except EndpointScriptError as exc:
        # PowerShell refuses to bind the parameters: no output line, exit code 1.
        return _refused(SCRIPT_NAME, exc)
    folder = f"{WORK_ROOT}\\{bound['JobId']}"
    try:
        if bound["Mode"] == "Cleanup":
            if _exists(endpoint, WORK_ROOT):
                _check_work_root(endpoint)
            endpoint.delete_tree(folder)
            return _finished("cleaned")
        if "Sha256" not in bound:
            return _finished("error", message=f"Sha256 is required in {bound['Mode']} mode")
        if bound["Mode"] == "Restore":
            return _restore(bound, bound["Sha256"].lower(), folder, endpoint)
        _initialize_job(endpoint, folder)
        return _collect(bound["Sha256"].lower(), folder, endpoint)
    except _UnsafeFolder as exc:
        return _finished(UNSAFE_FOLDER, message=str(exc))


class _UnsafeFolder(Exception):
    """Stop-UnsafeFolder: a folder the script must write to is not its own."""

    def __init__(self, path: str, reason: str, **facts: str) -> None:
        super().__init__(f"{path} {UNSAFE_REASONS[reason].format(**facts)}")


def _assert_own_folder(endpoint: SimulatedEndpoint, path: str, *, administrators: bool) -> None:
    """Assert-OwnFolder: no reparse point, owned by SYSTEM or Administrators, and no access rule
    for anyone but SYSTEM (and Administrators, for the work root)."""
    folder = endpoint.folder(path)
    if folder is None:
        raise _UnsafeFolder(path, "file")
    if folder.junction_to is not None:
        raise _UnsafeFolder(path, "junction")
    if folder.owner not in (SYSTEM_SID, ADMINISTRATORS_SID):
        raise _UnsafeFolder(path, "owner", sid=folder.owner)
    allowed = (SYSTEM_SID, ADMINISTRATORS_SID) if administrators else (SYSTEM_SID,)
    for sid in folder.access:
        if sid not in allowed:
            raise _UnsafeFolder(path, "access", sid=sid)


def _check_work_root(endpoint: SimulatedEndpoint) -> None:
    """Assert-WorkRoot: an existing work root must be a folder SYSTEM or Administrators own and
    no link; its access rules are then narrowed to theirs and checked again."""
    root = endpoint.folder(WORK_ROOT)
    if root is None:  # a file where the folder should be
        raise _UnsafeFolder(WORK_ROOT, "file")
    if root.junction_to is not None:
        raise _UnsafeFolder(WORK_ROOT, "junction")
    if root.owner not in (SYSTEM_SID, ADMINISTRATORS_SID):
        raise _UnsafeFolder(WORK_ROOT, "owner", sid=root.owner)
    endpoint.set_access(WORK_ROOT, (SYSTEM_SID, ADMINISTRATORS_SID))
    _assert_own_folder(endpoint, WORK_ROOT, administrators=True)


def _exists(endpoint: SimulatedEndpoint, path: str) -> bool:
    """Get-FolderItem: a folder, a junction or a file is there."""
    return endpoint.folder(path) is not None or endpoint.read_file(path) is not None


def _new_protected_folder(endpoint: SimulatedEndpoint, path: str, *, administrators: bool) -> None:
    """New-ProtectedFolder: created now, SYSTEM's (and Administrators'), or refused."""
    if _exists(endpoint, path):
        raise _UnsafeFolder(path, "existed")
    access = (SYSTEM_SID, ADMINISTRATORS_SID) if administrators else (SYSTEM_SID,)
    endpoint.make_folder(path, SYSTEM_SID, access)
    _assert_own_folder(endpoint, path, administrators=administrators)


def _initialize_job(endpoint: SimulatedEndpoint, folder: str) -> None:
    """Initialize-Job: the work root (made, or checked and narrowed), then a fresh job folder."""
    if not _exists(endpoint, WORK_ROOT):
        _new_protected_folder(endpoint, WORK_ROOT, administrators=True)
    else:
        _check_work_root(endpoint)
    _new_protected_folder(endpoint, folder, administrators=False)


def _collect(wanted: str, folder: str, endpoint: SimulatedEndpoint) -> ScriptRun:
    path = f"{folder}\\{SAMPLE_FILE_NAME}"
    for item in endpoint.resource_files():
        payload = store.read_payload(endpoint.read_quarantine_file(item.path))
        if payload is not None and hashlib.sha256(payload).hexdigest() == wanted:
            endpoint.write_file(path, defanged(payload))
            return _finished("found", sha256=wanted, size=len(payload), path=path, source="quarantine")
    return _finished("not_found", message="no quarantined file has this SHA-256")


def _restore(bound: Mapping[str, str], wanted: str, folder: str, endpoint: SimulatedEndpoint) -> ScriptRun:
    """Restore mode: MpCmdRun -Restore of that one path into the job folder; only the match is
    kept (defanged), every restored plaintext deleted before the exclusion goes."""
    if "OriginalPathHex" not in bound:
        return _finished("error", message="OriginalPathHex is required in Restore mode")
    try:
        original = bytes.fromhex(bound["OriginalPathHex"]).decode("utf-8")
    except ValueError:
        return _finished("error", message="OriginalPathHex is not UTF-8 text")
    if not re.search(ORIGINAL_PATH_PATTERN.replace(r"\z", r"\Z"), original):
        return _finished("error", message="OriginalPathHex is not an absolute path without wildcards")
    _initialize_job(endpoint, folder)
    restore_folder = f"{folder}\\restore"
    path = f"{folder}\\{SAMPLE_FILE_NAME}"
    found: bytes | None = None
    try:
        _new_protected_folder(endpoint, restore_folder, administrators=False)
        for restored in endpoint.restore(original, restore_folder):
            content = endpoint.read_file(restored)
            if content is not None and hashlib.sha256(content).hexdigest() == wanted:
                found = content
    finally:
        endpoint.delete_tree(restore_folder)
    if found is None:
        return _finished("not_found", message="restoring the original path gave no match")
    endpoint.write_file(path, defanged(found))
    return _finished("found", sha256=wanted, size=len(found), path=path, source="restore")


def simulate_locate(args: str, endpoint: SimulatedEndpoint) -> ScriptRun:
    """Do on an emulated endpoint what the read-only locate script does: list ResourceData and Entries."""
    try:
        parse_args(args, LOCATE_PARAMETERS)
    except EndpointScriptError as exc:
        return _refused(LOCATE_SCRIPT_NAME, exc)
    files = list(endpoint.resource_files())[:LOCATE_LIMIT]
    entries = _printed_entries(endpoint, endpoint.entries_files()[:LOCATE_LIMIT])
    status = "located" if files else "not_found"
    document = dict(
        zip(
            LOCATE_KEYS,
            (
                OUTPUT_VERSION,
                status,
                LANGUAGE_MODE,
                [{"path": f.path, "size": f.size} for f in files],
                entries,
                "" if files else "the quarantine holds no ResourceData file",
            ),
            strict=True,
        )
    )
    line = json.dumps(document, separators=(",", ":"))
    return ScriptRun(EXIT_FOUND if files else EXIT_NOT_FOUND, line + "\n", "", LOCATE_SCRIPT_NAME)


def _printed_entries(endpoint: SimulatedEndpoint, files: Sequence[QuarantineFile]) -> list[dict[str, Any]]:
    """The locator's list of Entries files, newest first, with the bytes (upper-case hex) of each
    it reads whole while they fit its bounds."""
    listed: list[dict[str, Any]] = []
    room = LOCATE_PRINT_TOTAL
    for file in files:
        item: dict[str, Any] = {"path": file.path, "size": file.size}
        if file.size <= min(LOCATE_PRINT_EACH, room):
            content = b"".join(endpoint.read_quarantine_file(file.path))
            if len(content) == file.size:
                item["hex"] = content.hex().upper()
                room -= file.size
        listed.append(item)
    return listed


def _refused(script: str, exc: EndpointScriptError) -> ScriptRun:
    return ScriptRun(EXIT_ERROR, "", f"{script} : Cannot validate the arguments: {exc}", script)


def _finished(status: str, **fields: Any) -> ScriptRun:
    return ScriptRun(_exit_code(status), output_line(status, **fields) + "\n", "")
