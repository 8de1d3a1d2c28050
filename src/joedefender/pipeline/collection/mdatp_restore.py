"""Restore on Linux and macOS, opt-in only (AllowQuarantineRestore): `joedefender-collect.sh`
restores the quarantined file by its original path with `mdatp` (older agents: by the id the
JSON listing gives), into a root-only folder behind a temporary exclusion, which takes the entry
out of the quarantine. The quarantine's format is not documented there, so restoring is the only
way to recover such a file. The script keeps only the match, defanged, for the GetFile of the
same action, and deletes the plaintext before the exclusion in a `trap` on every exit; its
Cleanup mode, run by the cleanup action, removes the job folder."""

from __future__ import annotations

from typing import ClassVar

from joedefender.domain.jobs import Candidate
from joedefender.domain.liveresponse import Command
from joedefender.domain.platforms import Platform
from joedefender.domain.reasons import Reason
from joedefender.endpoint import contract, posix_contract
from joedefender.pipeline.collection.collect_script import ScriptCollection
from joedefender.pipeline.collection.strategy import LibraryScript, Reach, Target
from joedefender.pipeline.config import PipelineConfig

POSIX_SCRIPT = LibraryScript(
    posix_contract.SCRIPT_NAME,
    "joedefender: restores one quarantined file by SHA-256 on Linux or macOS for Joe Sandbox analysis",
    "-Mode Restore|Cleanup -JobId ID [-Sha256 HEX -OriginalPathHex HEX]",
)


class MdatpRestore(ScriptCollection):
    name: ClassVar[str] = "mdatp-restore"
    how: ClassVar[str] = "mdatp quarantine restore by the Bash script (AllowQuarantineRestore)"
    reach: ClassVar[Reach] = Reach.RESTORE
    platforms: ClassVar[frozenset[Platform]] = frozenset({Platform.LINUX, Platform.MACOS})
    opt_in: ClassVar[tuple[str, ...]] = ("fetch_quarantined_files", "allow_quarantine_restore")
    scripts: ClassVar[tuple[LibraryScript, ...]] = (POSIX_SCRIPT,)

    def applies(self, candidate: Candidate, platform: Platform) -> bool:
        """mdatp restores by original path: only a path the script's parameter takes."""
        path = candidate.path_on(platform)
        if path is None:
            return False
        try:
            posix_contract.check_original_path(path)
        except contract.ContractError:
            return False
        return True

    def held_back(self, candidate: Candidate, platform: Platform, config: PipelineConfig) -> Reason | None:
        """Quarantined files are wanted but restore is not allowed: the comment says how to allow it."""
        wanted = config.fetch_quarantined_files and not config.allow_quarantine_restore
        return Reason.RESTORE_NOT_ALLOWED if wanted and self.fits(candidate, platform) else None

    def run_script(self, target: Target) -> Command:
        assert target.job.sha256 is not None
        request = posix_contract.PosixCollectRequest(
            "Restore", target.attempt.nonce, target.job.sha256, target.candidate.path_on(target.platform)
        )
        return Command.run_script(posix_contract.SCRIPT_NAME, posix_contract.format_args(request))

    def sample_path(self, target: Target) -> str:
        return posix_contract.sample_path(target.platform, target.attempt.nonce)

    def outcome(self, script_output: str, target: Target) -> contract.ScriptOutcome:
        return posix_contract.read_outcome(script_output, target.platform, target.attempt.nonce)

    def cleanup(self, job_id: str) -> list[Command]:
        args = posix_contract.format_args(posix_contract.PosixCollectRequest("Cleanup", job_id))
        return [Command.run_script(posix_contract.SCRIPT_NAME, args)]
