"""Collection (files only): a plan of (machine, strategy) pairs tried in order, online machines
first, one live response per machine at a time, within the tenant's session cap and our own
budget for starts. Each machine's platform is decided once, from the machines list, before its
strategies are chosen (`collection.devices`). The machine availability deadline runs only while
the world keeps the machines from us (offline, or held by someone else's session), not while
our own jobs or our own session cap do. Each attempt is run by `attempts.Attempts`.
"""

from __future__ import annotations

from collections.abc import Mapping

from joedefender.domain.jobs import Attempt, Candidate, JobState, SampleJob
from joedefender.domain.liveresponse import Machine
from joedefender.domain.markers import new_nonce
from joedefender.domain.reasons import Cause, Reason
from joedefender.pipeline.collection.devices import decide
from joedefender.pipeline.collection.machines import MachineHealth
from joedefender.pipeline.collection.plan import give_up_cause, plan
from joedefender.pipeline.collection.registry import by_name
from joedefender.pipeline.collection.strategy import CollectionStrategy
from joedefender.pipeline.context import Outcome, again
from joedefender.pipeline.pacing import StartPace
from joedefender.pipeline.ports import Start
from joedefender.pipeline.records import Changes, Versioned
from joedefender.pipeline.sample.attempts import HELD_ELSEWHERE, Attempts
from joedefender.pipeline.sample.handler import Result
from joedefender.pipeline.sample.ledger import JobLedger

_MINUTE = 60.0


class Collect:
    def __init__(self, ledger: JobLedger, attempts: Attempts) -> None:
        self._ctx = ctx = attempts.ctx
        self._ledger = ledger
        self._runner = attempts.runner
        self._strategies = attempts.strategies
        self._attempts = attempts
        self._health = MachineHealth(ctx)
        self._starts = StartPace(ctx.config.live_response_starts_per_minute)

    def advance(self, stored: Versioned[SampleJob]) -> Result:
        current = stored.record.current
        if current is None:
            return self._start_next(stored)
        if by_name(current.strategy, self._strategies) is None:
            return self._attempts.failed(stored, current, _unknown(current))
        return self._attempts.follow(stored, current)

    def refetch(self, stored: Versioned[SampleJob]) -> Result:
        """Joe was not reachable right after collection: fetch the result again (the link can be
        asked for anew) and submit; collect again when no attempt holds the file."""
        collected = [a for a in stored.record.attempts if a.outcome == "collected"]
        if not collected or by_name(collected[-1].strategy, self._strategies) is None:
            stored.record.move_to(JobState.COLLECT)
            self._ledger.saved(stored)
            return again(0)
        return self._attempts.take_sample(stored, collected[-1])

    def _start_next(self, stored: Versioned[SampleJob]) -> Outcome:
        ctx, job = self._ctx, stored.record
        pairs = plan(job, self._strategies, ctx.config)
        if not pairs:
            return self._give_up(stored)
        # The budget for starts (ours, and the tenant's every instance shares): wait for this
        # job's turn without holding a worker (and without asking for the machines' health
        # before it is worth knowing).
        turn = self._starts.wait(job.key, ctx.now(), ctx.clock.real(_MINUTE), self._tenant_turn)
        if turn > 0:
            return again(turn)
        machines = self._health.machines(c.machine_id for c, _ in pairs)
        self._decide(stored, machines)
        pairs = plan(job, self._strategies, ctx.config)  # with the platforms now known
        if not pairs:
            return self._give_up(stored)
        online = {c.machine_id: _up(machines.get(c.machine_id)) for c, _ in pairs}
        offline = [m for m, up in online.items() if not up]
        pairs.sort(key=lambda pair: not online[pair[0].machine_id])
        ours = elsewhere = False
        for candidate, strategy in pairs:
            if not online[candidate.machine_id]:
                continue
            outcome = self._start(stored, candidate, strategy)
            if outcome is HELD_ELSEWHERE:
                elsewhere = True
            elif outcome is not None:
                return outcome
            else:
                ours = True
        return self._wait_for_machines(stored, ours, elsewhere, offline)

    def _tenant_turn(self) -> float:
        return self._ctx.defender.start_turn(Start.LIVE_RESPONSE)

    def _give_up(self, stored: Versioned[SampleJob]) -> Outcome:
        return self._ledger.fail(stored, give_up_cause(stored.record, self._strategies, self._ctx.config))

    def _decide(self, stored: Versioned[SampleJob], machines: Mapping[str, Machine | None]) -> None:
        """Decide the platform of the machines listed for the first time for this job, and say how."""
        lines = decide(stored.record, machines)
        if lines:

            def write(changes: Changes) -> None:
                self._ledger.save(changes, stored)
                for line in lines:
                    changes.record(stored.record.key, "collect", "platform", line)

            self._ledger.commit(stored, write)

    def _start(
        self, stored: Versioned[SampleJob], candidate: Candidate, strategy: CollectionStrategy
    ) -> Outcome | None:
        """Start one attempt; None when another job of ours holds the machine (or our session cap
        is reached), `HELD_ELSEWHERE` when Defender says someone else's session holds it."""
        ctx, job = self._ctx, stored.record
        if not self._runner.hold(candidate.machine_id, job.key, self._attempts.machine_lease()):
            return None
        self._runner.ensure(strategy.scripts)
        attempt = Attempt(
            number=len(job.attempts) + 1,
            machine_id=candidate.machine_id,
            strategy=strategy.name,
            nonce=new_nonce(),
            started_at=ctx.now(),
            stage=strategy.first_stage,
        )
        job.attempts.append(attempt)
        job.move_to(JobState.COLLECTING)
        job.waiting_since = None
        return self._attempts.launch(stored, attempt)

    def _wait_for_machines(
        self, stored: Versioned[SampleJob], ours: bool, elsewhere: bool, offline: list[str]
    ) -> Outcome:
        """No candidate could be used: wait for our own jobs, or for the world, up to the limit."""
        ctx, job = self._ctx, stored.record
        busy = ours or elsewhere
        if ours:
            if job.waiting_since is not None:
                job.waiting_since, job.poll_interval = None, None
                self._ledger.saved(stored)
            return ctx.later(ctx.config.busy_retry)
        waiting = None
        if job.waiting_since is None:
            job.waiting_since, job.poll_interval = ctx.now(), None
            waiting = ("machines busy; " if busy else "") + (f"offline: {', '.join(offline)}" if offline else "")
        if ctx.clock.since(job.waiting_since) > ctx.config.machine_wait_limit:
            cause = Cause(reason=Reason.MACHINES_UNAVAILABLE, detail=str(round(ctx.config.machine_wait_limit / 60)))
        else:
            cause = None
            if not busy:
                job.poll_interval = ctx.config.machine_recheck(job.poll_interval)

        def write(changes: Changes) -> Outcome:
            if waiting is not None:
                changes.record(job.key, "collect", "waiting", waiting)
            if cause is not None:
                return self._ledger.fail(stored, cause, changes)
            self._ledger.save(changes, stored)
            return ctx.later(ctx.config.busy_retry if busy else job.poll_interval or 0.0)

        return self._ledger.commit(stored, write)


def _up(machine: Machine | None) -> bool:
    return machine is not None and machine.online


def _unknown(attempt: Attempt) -> Cause:
    return Cause(reason=Reason.ACTION_FAILED, detail=f"no collection strategy {attempt.strategy!r} in this version")
