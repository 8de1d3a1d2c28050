"""What RunScript does on an emulated endpoint.

On Windows, the project's library scripts are played by `endpoint_script.simulate` (collect) and
`endpoint_script.simulate_locate` (locate), which the tests check against the real scripts and
against the connector's contract. The emulator cannot run any other PowerShell: other library
scripts succeed with empty output (an emulator choice, not a documented behaviour).

On Linux and macOS, a `.sh` library script is run for real: bash executes it in a sandbox
(`bash_sandbox`) against the device's files and its `mdatp` model. Live response takes PowerShell
and Bash scripts (live-response.md); which runs where is not documented beyond that, so the
emulator runs `.ps1` on Windows only and `.sh` on Linux and macOS only, and fails the command
otherwise. Signature checks apply to PowerShell only ("Signature verification only applies for
PowerShell scripts"), so unsigned `.sh` scripts run whatever the tenant's setting.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from joedefender_emulators.mde import endpoint_script
from joedefender_emulators.mde.bash_args import ArgsRefused, split_args
from joedefender_emulators.mde.bash_sandbox import SandboxUnavailable, run_bash
from joedefender_emulators.mde.filesystem import EndpointFiles
from joedefender_emulators.mde.library import Library, LibraryFile

logger = logging.getLogger(__name__)


class CommandFailed(Exception):
    """The command fails on the endpoint; the message goes to the command's `errors`."""


@dataclass(frozen=True)
class ScriptResult:
    script_name: str
    exit_code: int
    script_output: str
    script_errors: str

    def to_bytes(self) -> bytes:
        """The RunScript result file: `{script_name, exit_code, script_output, script_errors}`."""
        document = {
            "script_name": self.script_name,
            "exit_code": self.exit_code,
            "script_output": self.script_output,
            "script_errors": self.script_errors,
        }
        return json.dumps(document).encode("utf-8")


def run_script(
    name: str, args: str, library: Library, files: EndpointFiles, unsigned_allowed: bool, limit: float
) -> ScriptResult:
    """Run a library script; raises CommandFailed when live response itself refuses.

    A non-zero exit code does not fail the command (docs silent): the script ran, and its
    exit code and output are in the result for the caller to read. `limit`: the real seconds a
    script run with real bash may take.
    """
    entry = library.get(name)
    if entry is None:
        raise CommandFailed(f"Script '{name}' was not found in the live response library.")
    bash = entry.file_name.lower().endswith(".sh")
    if bash != (files.os != "windows"):
        kind = "Bash" if bash else "PowerShell"
        raise CommandFailed(f"Script '{entry.file_name}': {kind} scripts do not run on this device's platform.")
    if bash:
        return _run_bash(entry, args, files, limit)
    if not unsigned_allowed:
        raise CommandFailed(
            f"Script '{entry.file_name}' is unsigned and unsigned script execution is disabled "
            "in the tenant's advanced features."
        )
    simulations = {
        endpoint_script.SCRIPT_NAME.lower(): endpoint_script.simulate,
        endpoint_script.LOCATE_SCRIPT_NAME.lower(): endpoint_script.simulate_locate,
    }
    simulation = simulations.get(entry.file_name.lower())
    if simulation is None:
        return ScriptResult(entry.file_name, 0, "", "")
    try:
        run = simulation(args, files.as_simulated_endpoint())
    except Exception as exc:  # a bug in the simulation must not take the emulator down
        logger.exception("simulating %s failed", entry.file_name)
        raise CommandFailed(f"Script '{entry.file_name}' failed: {type(exc).__name__}") from exc
    return ScriptResult(entry.file_name, run.exit_code, run.script_output, run.script_errors)


def _run_bash(entry: LibraryFile, args: str, files: EndpointFiles, limit: float) -> ScriptResult:
    """A Bash library script, executed by real bash on the emulated Linux or macOS device."""
    assert files.posix is not None
    try:
        argv = split_args(args)
    except ArgsRefused as exc:
        raise CommandFailed(str(exc)) from None
    try:
        run = run_bash(files.posix, entry.file_name, entry.content, argv, limit=limit)
    except SandboxUnavailable as exc:
        raise CommandFailed(f"the emulator cannot run Bash scripts here: {exc}") from None
    if run.signalled is not None:
        raise ScriptTimedOut(f"The script '{entry.file_name}' timed out.")
    return ScriptResult(entry.file_name, run.exit_code, run.stdout, run.stderr)


class ScriptTimedOut(CommandFailed):
    """Live response stopped the script at its timeout: the action ends TimeOut."""
