"""What runs on the endpoint, and what lies on it: the library scripts, their contract, and
Defender's quarantine format.

The connector goes through :mod:`joedefender.endpoint.contract` for the arguments it sends to
``joedefender-locate.ps1`` and ``joedefender-collect.ps1`` and the lines it reads back; the
scripts are package data (``scripts/``). :mod:`joedefender.endpoint.quarantine` decodes the
encrypted quarantine entries the locate strategy fetches.
"""

from joedefender.endpoint.contract import (
    DEFANG_KEY,
    EXIT_ERROR,
    EXIT_FOUND,
    EXIT_NOT_FOUND,
    LOCATE_SCRIPT_NAME,
    SCRIPT_NAME,
    WORK_ROOT,
    CollectRequest,
    ContractError,
    LocateOutcome,
    Refanger,
    ScriptOutcome,
    defang,
    format_args,
    format_locate_args,
    job_folder,
    sample_path,
    script_bytes,
    script_path,
)

__all__ = [
    "DEFANG_KEY",
    "EXIT_ERROR",
    "EXIT_FOUND",
    "EXIT_NOT_FOUND",
    "LOCATE_SCRIPT_NAME",
    "SCRIPT_NAME",
    "WORK_ROOT",
    "CollectRequest",
    "ContractError",
    "LocateOutcome",
    "Refanger",
    "ScriptOutcome",
    "defang",
    "format_args",
    "format_locate_args",
    "job_folder",
    "sample_path",
    "script_bytes",
    "script_path",
]
