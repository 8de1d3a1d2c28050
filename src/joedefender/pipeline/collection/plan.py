"""The collection plan: which strategy to try on which machine, in what order, and why a job
that ran out of them gives up.

Per machine (candidate), the strategies usable there, by reach: GetFile where the file may
still be, then the quarantine strategies, safest first (first of all when the evidence says
the file was prevented, blocked or quarantined), the destructive restore always last. Within a
reach the registry's order holds. A (machine, strategy) pair that failed is not tried again.
"""

from __future__ import annotations

from collections.abc import Sequence

from joedefender.domain.jobs import Candidate, SampleJob
from joedefender.domain.platforms import Platform
from joedefender.domain.reasons import Cause, Reason
from joedefender.pipeline.collection.devices import platform_for, unreachable
from joedefender.pipeline.collection.strategy import CollectionStrategy, Reach
from joedefender.pipeline.config import PipelineConfig

_QUARANTINED = {"prevented", "blocked", "remediated", "quarantined"}
_USUAL = (Reach.ON_DISK, Reach.QUARANTINE, Reach.RESTORE)
_QUARANTINE_FIRST = (Reach.QUARANTINE, Reach.ON_DISK, Reach.RESTORE)


def strategies_for(
    candidate: Candidate, platform: Platform, strategies: Sequence[CollectionStrategy], config: PipelineConfig
) -> list[CollectionStrategy]:
    """The strategies to try on the candidate's machine, of `platform`, in order."""
    quarantined = (candidate.detection_status or "").lower() in _QUARANTINED
    order = _QUARANTINE_FIRST if quarantined else _USUAL
    usable = [s for s in strategies if s.usable(candidate, platform, config)]
    return sorted(usable, key=lambda s: order.index(s.reach))


def plan(
    job: SampleJob, strategies: Sequence[CollectionStrategy], config: PipelineConfig
) -> list[tuple[Candidate, CollectionStrategy]]:
    """Every (machine, strategy) pair still worth a try, machine by machine (none on a machine
    live response cannot reach; for a file whose hash is not known yet, only the strategies that
    fetch what is at its path)."""
    tried = {(a.machine_id, a.strategy) for a in job.attempts if a.outcome == "failed"}
    pairs: list[tuple[Candidate, CollectionStrategy]] = []
    seen: set[tuple[str, str]] = set()
    for candidate in job.candidates:
        platform = platform_for(job, candidate)
        if platform is None:
            continue
        for strategy in strategies_for(candidate, platform, strategies, config):
            pair = (candidate.machine_id, strategy.name)
            if job.sha256 is None and not strategy.by_path:
                continue
            if pair not in tried and pair not in seen:
                seen.add(pair)
                pairs.append((candidate, strategy))
    return pairs


def give_up_cause(job: SampleJob, strategies: Sequence[CollectionStrategy], config: PipelineConfig) -> Cause:
    """Why the job could not be collected, once nothing is left to try."""
    if not job.candidates:
        return Cause(reason=Reason.NO_CANDIDATE)
    failed = [a for a in job.attempts if a.outcome == "failed"]
    failures = [f"{a.strategy} on {a.machine_id}: {a.failure.text if a.failure else ''}" for a in failed]
    failures += unreachable(job)
    detail = f" ({'; '.join(failures)})" if failures else ""
    held = _held_back(job, strategies, config)
    if held is not None:
        return Cause(reason=held, detail=detail)
    off_disk = {s.name for s in strategies if s.reach is not Reach.ON_DISK}
    quarantine = [a for a in job.attempts if a.strategy in off_disk]
    if quarantine and all(
        a.failure is not None and a.failure.reason == Reason.QUARANTINE_NOT_FOUND for a in quarantine
    ):
        return Cause(reason=Reason.QUARANTINE_NOT_FOUND_ANYWHERE, detail=detail)
    return Cause(reason=Reason.NOT_COLLECTED, detail="; ".join(failures) or "no way to reach it")


def _held_back(job: SampleJob, strategies: Sequence[CollectionStrategy], config: PipelineConfig) -> Reason | None:
    """What a setting alone kept from a candidate's machine, for the failure to say how to allow it."""
    for candidate in job.candidates:
        platform = platform_for(job, candidate)
        if platform is None:
            continue
        for strategy in strategies:
            reason = strategy.held_back(candidate, platform, config)
            if reason is not None:
                return reason
    return None
