"""What RunScript does on an emulated endpoint.

The project's library scripts are played by `endpoint_script.simulate` (collect) and
`endpoint_script.simulate_locate` (locate), which the tests check against the real scripts and
against the connector's contract. The emulator cannot run any other
PowerShell: other library scripts succeed with empty output (an emulator choice, not a
documented behaviour).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from joedefender_emulators.mde import endpoint_script
from joedefender_emulators.mde.filesystem import EndpointFiles
from joedefender_emulators.mde.library import Library

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


def run_script(name: str, args: str, library: Library, files: EndpointFiles, unsigned_allowed: bool) -> ScriptResult:
    """Run a library script; raises CommandFailed when live response itself refuses.

    A non-zero exit code does not fail the command (docs silent): the script ran, and its
    exit code and output are in the result for the caller to read.
    """
    entry = library.get(name)
    if entry is None:
        raise CommandFailed(f"Script '{name}' was not found in the live response library.")
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
