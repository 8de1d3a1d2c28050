"""Restore, opt-in only (AllowQuarantineRestore): `MpCmdRun -Restore` by the original path,
behind a temporary exclusion, which takes the entry out of the quarantine. The collect script
deletes the plaintext before it removes the exclusion, in a `finally`, and keeps only the
defanged copy for the GetFile."""

from __future__ import annotations

from typing import ClassVar

from joedefender.domain.jobs import Candidate
from joedefender.domain.platforms import Platform
from joedefender.endpoint import contract
from joedefender.pipeline.collection.collect_script import CollectScriptStrategy
from joedefender.pipeline.collection.strategy import Reach, Target


class Restore(CollectScriptStrategy):
    name: ClassVar[str] = "restore"
    how: ClassVar[str] = "MpCmdRun -Restore (AllowQuarantineRestore)"
    reach: ClassVar[Reach] = Reach.RESTORE
    opt_in: ClassVar[tuple[str, ...]] = ("fetch_quarantined_files", "allow_quarantine_restore")

    def applies(self, candidate: Candidate, platform: Platform) -> bool:
        """MpCmdRun restores by original path: only a path the script's parameter takes."""
        if candidate.path is None:
            return False
        try:
            contract.ORIGINAL_PATH_RULE.check(candidate.path)
        except contract.ContractError:
            return False
        return True

    def request(self, target: Target) -> contract.CollectRequest:
        assert target.job.sha256 is not None
        return contract.CollectRequest(
            "Restore", target.attempt.nonce, target.job.sha256, original_path=target.candidate.path
        )
