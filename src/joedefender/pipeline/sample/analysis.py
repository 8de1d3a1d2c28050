"""Waiting for the verdict: `submission/info` (or `analysis/info` for an analysis found by its
marker) looked at on an adaptive schedule, up to the analysis timeout; nothing is written while
nothing is learnt."""

from __future__ import annotations

from joedefender.domain.jobs import SampleJob
from joedefender.domain.reasons import Cause, Reason
from joedefender.pipeline.context import Context
from joedefender.pipeline.records import Versioned
from joedefender.pipeline.sample.handler import Result
from joedefender.pipeline.sample.ledger import JobLedger
from joedefender.pipeline.sample.looks import AnalysisLooks


class Analysis:
    def __init__(self, ctx: Context, ledger: JobLedger, looks: AnalysisLooks) -> None:
        self._ctx = ctx
        self._ledger = ledger
        self._looks = looks

    def advance(self, stored: Versioned[SampleJob]) -> Result:
        ctx, job = self._ctx, stored.record
        submission = job.submission
        assert submission is not None
        webid = submission.webid
        if submission.submission_id is not None:
            info = ctx.sandbox.submission_info(submission.submission_id)
            finished = info.finished
            if finished and info.webid is None:
                return self._ledger.fail(stored, Cause(reason=Reason.NO_ANALYSIS))
            webid = info.webid
        else:
            assert webid is not None
            finished = ctx.sandbox.analysis_status(webid) == "finished"
        started = submission.submitted_at or job.updated_at
        if finished:
            assert webid is not None
            self._looks.finished(job)
            verdict = ctx.sandbox.verdict(webid)
            job.verdict, job.verdict_source = verdict, "analysis"
            submission.webid = webid
            return self._ledger.done(stored, "analysis", "finished", f"{verdict.detection}, score {verdict.score}")
        if ctx.clock.since(started) > ctx.config.analysis_timeout:
            minutes = round(ctx.config.analysis_timeout / 60)
            return self._ledger.fail(stored, Cause(reason=Reason.ANALYSIS_TIMEOUT, detail=str(minutes)))
        return ctx.later(self._looks.delay(job))
