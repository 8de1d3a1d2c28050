"""The contract between the connector and ``joedefender-collect.sh``, the Linux and macOS script.

The script restores one quarantined file by its original path with ``mdatp`` (the quarantine's
format is not documented on these platforms, so restoring is the only way to get a file out of
it), keeps the copy whose SHA-256 matches, defanged as on Windows (``contract.defang``), into
``<work root>/<JobId>/sample.bin`` for a GetFile in the same action; Cleanup deletes that folder.
The connector sends it only when the user allowed restore (``AllowQuarantineRestore``).

How live response hands ``Args`` to a Bash script is not documented (split on blanks, or read by a
shell first). So, as on Windows, every argument is made of ``[A-Za-z0-9-]`` only and means the
same either way; the original path travels hex-encoded. The arguments are ``-Name value`` pairs
like the PowerShell script's, so live response's log reads the same for both. The script prints
the same one JSON line as the PowerShell script (``contract.ScriptOutcome``), with source
``restore``. The MDE emulator runs this very script with bash against its ``mdatp`` model, and
splits ``Args`` by its own, independent reading (``joedefender_emulators.mde.bash_args``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from joedefender.domain.platforms import Platform
from joedefender.endpoint.contract import (
    SAMPLE_FILE_NAME,
    ContractError,
    ParameterRule,
    ScriptOutcome,
    join_args,
)

SCRIPT_NAME = "joedefender-collect.sh"
# Root's own folders on each platform; no link in either path (on a Mac, /var is a link to
# /private/var, so the script uses the real folder).
WORK_ROOTS: Mapping[Platform, str] = {
    Platform.LINUX: "/var/opt/joedefender",
    Platform.MACOS: "/private/var/joedefender",
}
PosixMode = Literal["Restore", "Cleanup"]
MODES: tuple[str, ...] = get_args(PosixMode)
MAX_PATH_BYTES = 4095  # PATH_MAX less the terminating NUL

# The script's own checks, in the order format_args emits them. Each admits only [A-Za-z0-9-].
PARAMETER_RULES: Mapping[str, ParameterRule] = {
    rule.name: rule
    for rule in (
        ParameterRule("JobId", 1, 64, r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}\z"),
        ParameterRule("Sha256", 64, 64, r"^[0-9a-fA-F]{64}\z"),
        ParameterRule("OriginalPathHex", 4, 2 * MAX_PATH_BYTES, r"^(?:[0-9a-fA-F]{2})+\z"),
    )
}
# What the script requires of the decoded path before mdatp sees it: absolute, no control
# character, no wildcard (so no restore can match several paths), no empty, `.` or `..` part,
# no trailing slash.
_CONTROL_OR_WILDCARD = re.compile(r"[\x00-\x1f\x7f*?\[\]]")
_BAD_PARTS = re.compile(r"//|/\./|/\.\./|/\.{1,2}\Z")


def check_original_path(path: str) -> None:
    """Raise ContractError unless the script would accept ``path`` as the file to restore."""
    encoded = path.encode("utf-8", errors="surrogateescape")
    if not 2 <= len(encoded) <= MAX_PATH_BYTES:
        raise ContractError(f"OriginalPath must be 2 to {MAX_PATH_BYTES} bytes long, got {len(encoded)}")
    if not path.startswith("/") or path.endswith("/"):
        raise ContractError("OriginalPath must be an absolute file path")
    if _CONTROL_OR_WILDCARD.search(path):
        raise ContractError("OriginalPath must hold no control or wildcard character")
    if _BAD_PARTS.search(path):
        raise ContractError("OriginalPath must have no empty, . or .. component")


@dataclass(frozen=True)
class PosixCollectRequest:
    """One run of the Bash script: restore a quarantined file (opt-in), or clean the job folder up."""

    mode: PosixMode
    job_id: str
    sha256: str | None = None
    original_path: str | None = None  # Restore only; sent hex-encoded

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ContractError(f"Mode must be one of {', '.join(MODES)}")
        if self.mode == "Restore" and (self.sha256 is None or self.original_path is None):
            raise ContractError("Sha256 and OriginalPath are required in Restore mode")
        if self.original_path is not None:
            check_original_path(self.original_path)
        for name, value in self._values():
            if name != "Mode":
                PARAMETER_RULES[name].check(value)

    def _values(self) -> list[tuple[str, str]]:
        path_hex = None
        if self.original_path is not None:
            path_hex = self.original_path.encode("utf-8", errors="surrogateescape").hex()
        values = {"Mode": self.mode, "JobId": self.job_id, "Sha256": self.sha256, "OriginalPathHex": path_hex}
        return [(name, value) for name, value in values.items() if value is not None]


def format_args(request: PosixCollectRequest) -> str:
    """The RunScript ``Args`` value for ``request``; raises ContractError if the script would refuse it."""
    request.validate()
    return join_args(request._values())


def work_root(platform: Platform) -> str:
    root = WORK_ROOTS.get(platform)
    if root is None:
        raise ContractError(f"{SCRIPT_NAME} runs on Linux and macOS, not on {platform.label}")
    return root


def job_folder(platform: Platform, job_id: str) -> str:
    PARAMETER_RULES["JobId"].check(job_id)
    return f"{work_root(platform)}/{job_id}"


def sample_path(platform: Platform, job_id: str) -> str:
    """Where a Restore leaves the defanged sample: the GetFile path of the same action."""
    return f"{job_folder(platform, job_id)}/{SAMPLE_FILE_NAME}"


def read_outcome(script_output: str, platform: Platform, job_id: str) -> ScriptOutcome:
    """The script's one line, checked: a found sample is where this job's GetFile looks, from a restore."""
    outcome = ScriptOutcome.from_script_output(script_output)
    if outcome.status == "found" and (outcome.path != sample_path(platform, job_id) or outcome.source != "restore"):
        raise ContractError("the script says it found the sample somewhere this job did not ask for")
    return outcome
