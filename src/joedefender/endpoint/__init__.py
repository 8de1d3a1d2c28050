"""What runs on the endpoint: the quarantine collection script and its contract.

The connector, the MDE emulator and the tests all go through :mod:`joedefender.endpoint.contract`,
so the arguments sent to ``joedefender-collect.ps1`` and the line it prints mean the same thing
everywhere. The script itself is package data (``scripts/joedefender-collect.ps1``).
"""

from joedefender.endpoint.contract import (
    DEFANG_KEY,
    EXIT_ERROR,
    EXIT_FOUND,
    EXIT_NOT_FOUND,
    SCRIPT_NAME,
    WORK_ROOT,
    CollectRequest,
    ContractError,
    QuarantinedItem,
    Refanger,
    ScriptOutcome,
    ScriptRun,
    SimulatedEndpoint,
    defang,
    format_args,
    job_folder,
    parse_args,
    sample_path,
    script_bytes,
    script_path,
    simulate,
)

__all__ = [
    "DEFANG_KEY",
    "EXIT_ERROR",
    "EXIT_FOUND",
    "EXIT_NOT_FOUND",
    "SCRIPT_NAME",
    "WORK_ROOT",
    "CollectRequest",
    "ContractError",
    "QuarantinedItem",
    "Refanger",
    "ScriptOutcome",
    "ScriptRun",
    "SimulatedEndpoint",
    "defang",
    "format_args",
    "job_folder",
    "parse_args",
    "sample_path",
    "script_bytes",
    "script_path",
    "simulate",
]
