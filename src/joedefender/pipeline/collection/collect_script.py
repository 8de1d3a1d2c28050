"""What the strategies that run a collect script share: its outcome line, the defanged sample it
leaves in a job folder only SYSTEM (or root) can read, fetched by a GetFile in the same action,
and the cleanup action that removes the folder afterwards.

`ScriptCollection` is that, whatever the script; `CollectScriptStrategy` is its Windows form, for
`joedefender-collect.ps1` (`joedefender.endpoint.contract`): `Collect` decodes the quarantine
entry on the endpoint, `Restore` takes it out with MpCmdRun behind a temporary exclusion; either
writes only the match, defanged, and prints one JSON line saying what it found. The Linux and
macOS form is `mdatp_restore`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from typing import ClassVar

from joedefender.domain.errors import NotFound
from joedefender.domain.jobs import Attempt
from joedefender.domain.liveresponse import ActionStatus, Command, LiveResponseAction
from joedefender.domain.platforms import Platform
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


class ScriptCollection(CollectionStrategy):
    """A library script that leaves the defanged sample for a GetFile in the same action."""

    detection_sources: ClassVar[frozenset[str] | None] = frozenset({"windowsdefenderav"})

    @abstractmethod
    def run_script(self, target: Target) -> Command:
        """The RunScript command of this attempt."""

    @abstractmethod
    def sample_path(self, target: Target) -> str:
        """Where the script leaves the defanged sample."""

    @abstractmethod
    def outcome(self, script_output: str, target: Target) -> contract.ScriptOutcome:
        """The script's outcome line, checked (ContractError when it is not one)."""

    def commands(self, target: Target) -> list[Command]:
        return [self.run_script(target), Command.get_file(self.sample_path(target))]

    def after(self, action: LiveResponseAction, results: ActionResults, target: Target) -> AfterAction:
        succeeded = action.status == ActionStatus.SUCCEEDED
        if succeeded or action.status == ActionStatus.FAILED:
            outcome = self._read(results, target)
            if outcome is not None and outcome.status != "found":
                return Failed(_script_failure(outcome))
        if not succeeded:
            return Failed(Cause(reason=Reason.ACTION_FAILED, detail=action.describe_failure()))
        return Deliver()

    def _read(self, results: ActionResults, target: Target) -> contract.ScriptOutcome | None:
        try:
            return self.outcome(results.script_output(0), target)
        except (contract.ContractError, NotFound):
            return None

    def sample_results(self, attempt: Attempt) -> list[int]:
        return [1]  # after the script's own output

    def plain(self, chunks: Iterator[bytes], max_bytes: int) -> Iterator[bytes]:
        refanger = contract.Refanger()
        for chunk in chunks:
            yield refanger.feed(chunk)


class CollectScriptStrategy(ScriptCollection):
    """`joedefender-collect.ps1` on Windows."""

    platforms: ClassVar[frozenset[Platform]] = frozenset({Platform.WINDOWS})
    scripts: ClassVar[tuple[LibraryScript, ...]] = (COLLECT_SCRIPT,)

    @abstractmethod
    def request(self, target: Target) -> contract.CollectRequest:
        """The script's arguments for this attempt."""

    def run_script(self, target: Target) -> Command:
        return Command.run_script(contract.SCRIPT_NAME, contract.format_args(self.request(target)))

    def sample_path(self, target: Target) -> str:
        return contract.sample_path(target.attempt.nonce)

    def outcome(self, script_output: str, target: Target) -> contract.ScriptOutcome:
        return contract.ScriptOutcome.from_script_output(script_output)

    def cleanup(self, job_id: str) -> list[Command]:
        args = contract.format_args(contract.CollectRequest(mode="Cleanup", job_id=job_id))
        return [Command.run_script(contract.SCRIPT_NAME, args)]


def _script_failure(outcome: contract.ScriptOutcome) -> Cause:
    if outcome.status == "not_found":
        return Cause(reason=Reason.QUARANTINE_NOT_FOUND)
    if outcome.status == "unsafe_folder":
        return Cause(reason=Reason.WORK_FOLDER_UNSAFE, detail=outcome.message)
    return Cause(reason=Reason.SCRIPT_FAILED, detail=outcome.message or outcome.status)
