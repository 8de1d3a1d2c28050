"""On-endpoint decode ("quarantine"): the collect script decodes Defender's quarantine on the
endpoint and leaves only the matching entry, defanged, for a GetFile in the same action."""

from __future__ import annotations

from typing import ClassVar

from joedefender.endpoint import contract
from joedefender.pipeline.collection.collect_script import CollectScriptStrategy
from joedefender.pipeline.collection.strategy import Reach, Target


class Decode(CollectScriptStrategy):
    name: ClassVar[str] = "quarantine"
    how: ClassVar[str] = "the collect script decoding the quarantine on the endpoint"
    reach: ClassVar[Reach] = Reach.QUARANTINE
    opt_in: ClassVar[tuple[str, ...]] = ("fetch_quarantined_files",)

    def request(self, target: Target) -> contract.CollectRequest:
        assert target.job.sha256 is not None
        return contract.CollectRequest("Collect", target.attempt.nonce, target.job.sha256)
