"""What runs on the endpoint: the library scripts, and their contract with the connector.

The connector goes through :mod:`joedefender.endpoint.contract` for the arguments it sends to
``joedefender-locate.ps1`` and ``joedefender-collect.ps1`` and the lines it reads back (the
locator's in :mod:`joedefender.endpoint.locate_contract`); the
scripts are package data (``scripts/``). What the connector reads of the quarantine's own files
is in :mod:`joedefender.formats.defender_quarantine`.
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
from joedefender.endpoint.locate_contract import LocateOutcome

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
