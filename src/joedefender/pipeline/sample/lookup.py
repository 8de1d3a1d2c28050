"""Lookup: does Joe Sandbox know the sample already, and does the resubmit policy reuse that?"""

from __future__ import annotations

from datetime import UTC, datetime

from joedefender.domain.jobs import JobState, SampleJob
from joedefender.pipeline.context import Context
from joedefender.pipeline.records import Versioned
from joedefender.pipeline.sample.handler import Proceed, Result
from joedefender.pipeline.sample.ledger import JobLedger


class Lookup:
    def __init__(self, ctx: Context, ledger: JobLedger) -> None:
        self._ctx = ctx
        self._ledger = ledger

    def advance(self, stored: Versioned[SampleJob]) -> Result:
        ctx, job = self._ctx, stored.record
        if job.kind == "file":
            assert job.sha256 is not None
            known = ctx.sandbox.lookup(job.sha256)
        else:
            assert job.url is not None
            known = ctx.sandbox.lookup_url(job.url)
        reuse = ctx.config.resubmit.decide(known, datetime.fromtimestamp(ctx.now(), UTC))
        if reuse is not None:
            verdict = reuse.verdict
            job.verdict, job.verdict_source = verdict, "lookup"
            job.older_verdict = reuse.older_more_severe
            detail = f"{verdict.detection} (analysis {verdict.webid}), not resubmitted"
            return self._ledger.done(stored, "lookup", "known", detail)
        detail = "unknown to Joe Sandbox" if not known else f"known, {ctx.config.resubmit.describe()}"
        # A URL, or a file collected already (by its path, before its hash had this job): submit.
        in_hand = job.kind == "url" or any(a.outcome == "collected" for a in job.attempts)
        job.move_to(JobState.SUBMIT if in_hand else JobState.COLLECT)
        self._ledger.saved(stored, "lookup", "analyse", detail)
        return Proceed()
