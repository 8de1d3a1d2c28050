"""What the two strategies that run the collect script share: its outcome line, the defanged
sample it leaves in a job folder only SYSTEM can read (fetched by a GetFile in the same action),
and the cleanup action that removes the folder afterwards.

The script is `joedefender-collect.ps1` (`joedefender.endpoint.contract`): `Collect` decodes the
quarantine entry on the endpoint, `Restore` takes it out with MpCmdRun behind a temporary
exclusion; either writes only the match, defanged, and prints one JSON line saying what it found.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from typing import ClassVar

from joedefender.domain.errors import NotFound
from joedefender.domain.jobs import Attempt
from joedefender.domain.liveresponse import ActionStatus, Command, LiveResponseAction
from joedefender.domain.reasons import Cause, Reason
from joedefender.endpoint import contract
from joedefender.pipeline.collection.strategy import (
    ActionResults,
    AfterAction,
    CollectionStrategy,
    Deliver,
    Failed,
    LibraryScript,
    Target,
)

COLLECT_SCRIPT = LibraryScript(
    contract.SCRIPT_NAME,
    "joedefender: recovers one quarantined file by SHA-256 for Joe Sandbox analysis",
    "-Mode Collect|Restore|Cleanup -JobId ID [-Sha256 HEX] [-OriginalPathHex HEX]",
)


class CollectScriptStrategy(CollectionStrategy):
    detection_sources: ClassVar[frozenset[str] | None] = frozenset({"windowsdefenderav"})
    scripts: ClassVar[tuple[LibraryScript, ...]] = (COLLECT_SCRIPT,)

    @abstractmethod
    def request(self, target: Target) -> contract.CollectRequest:
        """The script's arguments for this attempt."""

    def commands(self, target: Target) -> list[Command]:
        nonce = target.attempt.nonce
        return [
            Command.run_script(contract.SCRIPT_NAME, contract.format_args(self.request(target))),
            Command.get_file(contract.sample_path(nonce)),
        ]

    def after(self, action: LiveResponseAction, results: ActionResults, target: Target) -> AfterAction:
        succeeded = action.status == ActionStatus.SUCCEEDED
        if succeeded or action.status == ActionStatus.FAILED:
            outcome = _script_outcome(results)
            if outcome is not None and outcome.status != "found":
                return Failed(_script_failure(outcome))
        if not succeeded:
            return Failed(Cause(reason=Reason.ACTION_FAILED, detail=action.describe_failure()))
        return Deliver()

    def sample_results(self, attempt: Attempt) -> list[int]:
        return [1]  # after the script's own output

    def plain(self, chunks: Iterator[bytes], max_bytes: int) -> Iterator[bytes]:
        refanger = contract.Refanger()
        for chunk in chunks:
            yield refanger.feed(chunk)

    def cleanup(self, job_id: str) -> list[Command]:
        args = contract.format_args(contract.CollectRequest(mode="Cleanup", job_id=job_id))
        return [Command.run_script(contract.SCRIPT_NAME, args)]


def _script_outcome(results: ActionResults) -> contract.ScriptOutcome | None:
    try:
        return contract.ScriptOutcome.from_script_output(results.script_output(0))
    except (contract.ContractError, NotFound):
        return None


def _script_failure(outcome: contract.ScriptOutcome) -> Cause:
    if outcome.status == "not_found":
        return Cause(reason=Reason.QUARANTINE_NOT_FOUND)
    if outcome.status == "unsafe_folder":
        return Cause(reason=Reason.WORK_FOLDER_UNSAFE, detail=outcome.message)
    return Cause(reason=Reason.SCRIPT_FAILED, detail=outcome.message or outcome.status)
