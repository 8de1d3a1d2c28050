"""What runs on the endpoint: the quarantine collection script and its contract.

The connector goes through :mod:`joedefender.endpoint.contract` for the arguments it sends to
``joedefender-collect.ps1`` and the line it reads back. The script itself is package data
(``scripts/joedefender-collect.ps1``).
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
    Refanger,
    ScriptOutcome,
    defang,
    format_args,
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
    "SCRIPT_NAME",
    "WORK_ROOT",
    "CollectRequest",
    "ContractError",
    "Refanger",
    "ScriptOutcome",
    "defang",
    "format_args",
    "job_folder",
    "sample_path",
    "script_bytes",
    "script_path",
]
