"""Verdict actions: a finished sample's IOCs pushed to Defender as indicators, exactly once.

Two steps. `indicators:<sample>` reads the analysis' IOCs and chooses what to push (the push goes
`ready`); `indicators:tenant` imports what is ready across samples in batches of at most 500,
so a burst of verdicts costs ⌈indicators / 500⌉ imports within Defender's 30 a minute.

Exactly once: the batch is recorded (`importing`, with its nonce) before the import. Defender's
import creates or updates by value and type, so a repeated import never duplicates; after an
uncertain outcome (a crash, a lost answer) the values are first looked up by value, and those
of ours that already carry the expiry asked for are not imported again. Indicators never hold up
or fail the alert's comment: they are scheduled beside it and every failure stays here.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from joedefender.domain.errors import PortError, Rejected
from joedefender.domain.indicator_values import IndicatorType
from joedefender.domain.indicators import ExistingIndicator, ImportResult, Indicator, propose, render_indicator
from joedefender.domain.jobs import IndicatorBudget, IndicatorPush, JobState, PushedValue, PushState, SampleJob
from joedefender.domain.keys import TENANT_BATCH, indicators_work_key, link_prefix
from joedefender.domain.reasons import Cause
from joedefender.pipeline.context import DONE, Context, Outcome, again
from joedefender.pipeline.records import Changes, Versioned

MAX_BATCH = 500
# Samples per import: a batch's units of work save every push of it (and the budget) in one, and
# a store may hold only so many documents in one transaction (Azure Tables: 100 entities).
MAX_PUSHES = 90
_GATHER = 5.0  # nominal seconds a batch waits for more samples to finish
_GATHER_MAX = 60.0  # nominal seconds an under-full batch may wait for samples whose IOCs are being read
_RECOUNT = 900.0  # nominal seconds between counts of the tenant's active indicators
_HOUR = 3600.0
_LOOKUP_CHUNK = 25  # values per targeted lookup (`indicatorValue eq … or …`)
_LOOKUP_CHARS = 1500  # and their length, to keep the request line short
STEP = "indicators"


def schedule_indicators(ctx: Context, changes: Changes, job: SampleJob, alert_id: str | None = None) -> None:
    """In the unit of work that makes `job` done (or links another alert to it): ask for its
    indicators when the policy wants them; a later round extends the expiry of the same ones."""
    policy = ctx.config.indicators
    if job.state != JobState.DONE or not policy.wants(job.verdict):
        return
    assert job.verdict is not None
    stored = ctx.pushes.get(job.key)
    if stored is None:
        push = IndicatorPush(sample_key=job.key, alert_id=alert_id or _linked_alert(ctx, job.key), updated_at=ctx.now())
        changes.create(ctx.pushes, job.key, push)
        changes.enqueue(indicators_work_key(job.key))
        return
    push = stored.record
    push.alert_id = alert_id or push.alert_id
    if push.state in (PushState.DONE, PushState.REFUSED):
        same_analysis = push.webid == job.verdict.webid and push.values
        push.state = PushState.READY if same_analysis else PushState.DUE
        push.failure = None
        changes.enqueue(indicators_work_key(TENANT_BATCH if same_analysis else job.key), _GATHER)
    push.updated_at = ctx.now()
    changes.save(stored)


def _linked_alert(ctx: Context, sample_key: str) -> str | None:
    """An alert that carries the sample, for the indicators' description to name."""
    links = ctx.links.list(prefix=link_prefix(sample_key))
    return links[-1].record.alert_id if links else None


class IndicatorsWork:
    """`indicators:<sample>` chooses a sample's indicators, `indicators:tenant` imports a batch."""

    def __init__(self, ctx: Context) -> None:
        self._choose = ChooseStep(ctx)
        self._batch = BatchStep(ctx)

    def run(self, subject: str) -> Outcome:
        return self._batch.run() if subject == TENANT_BATCH else self._choose.run(subject)

    def give_up(self, subject: str, cause: Cause) -> None:
        """A sample's IOC report could not be read: nothing is pushed for it. A batch is only
        dropped: its pushes stay ready (or importing) for the next batch."""
        if subject != TENANT_BATCH:
            self._choose.give_up(subject, cause.text)


class ChooseStep:
    """`indicators:<sample>`: read the IOC report and choose the values (one Joe call)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def run(self, sample_key: str) -> Outcome:
        ctx = self._ctx
        stored = ctx.pushes.get(sample_key)
        job = ctx.jobs.get(sample_key)
        if stored is None or stored.record.state != PushState.DUE or job is None or job.record.verdict is None:
            return DONE
        push, verdict = stored.record, job.record.verdict
        policy = ctx.config.indicators
        try:
            iocs = ctx.sandbox.iocs(verdict.webid)
        except PortError as exc:
            ctx.record(sample_key, STEP, "will retry", f"IOC report: {type(exc).__name__}: {exc.message[:300]}")
            raise
        cap = min(policy.per_sample_cap, policy.per_hour_cap)  # one sample always fits in an hour
        proposal = propose(job.record.sha256, job.record.url, iocs, policy.allow, cap)
        push.webid = verdict.webid
        push.values = [PushedValue(type=kind, value=value) for kind, value in proposal.entries]
        push.skipped = proposal.describe_skipped()
        push.state = PushState.READY if push.values else PushState.DONE
        push.updated_at = ctx.now()
        with ctx.changes() as changes:
            changes.save(stored)
            detail = f"{len(push.values)} chosen" + (f"; left out: {push.skipped}" if push.skipped else "")
            changes.record(sample_key, STEP, "chosen", detail)
            if push.values:
                changes.enqueue(indicators_work_key(TENANT_BATCH), _GATHER)
        return DONE

    def give_up(self, sample_key: str, reason: str) -> None:
        """The IOC report could not be read however often it was tried: nothing is pushed."""
        stored = self._ctx.pushes.get(sample_key)
        if stored is None or stored.record.state != PushState.DUE:
            return
        stored.record.state, stored.record.failure = PushState.REFUSED, reason
        with self._ctx.changes() as changes:
            changes.save(stored)
            changes.record(sample_key, STEP, "failed", reason)


class BatchStep:
    """`indicators:tenant`: import what is ready, at most 500 indicators per call, across samples."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def run(self) -> Outcome:
        ctx = self._ctx
        pushes = ctx.pushes.list()
        pending = [p for p in pushes if p.record.state in (PushState.READY, PushState.IMPORTING)]
        if not pending:
            return DONE
        ready = sum(len(p.record.values) for p in pending)
        choosing = any(p.record.state == PushState.DUE for p in pushes)
        oldest = min(p.record.updated_at for p in pending)
        full = ready >= MAX_BATCH or len(pending) >= MAX_PUSHES
        if not full and choosing and ctx.clock.since(oldest) < _GATHER_MAX:
            return ctx.later(_GATHER)  # more samples are about to be ready: fill the batch
        # Uncertain batches first (they may be in Defender already), then the oldest ready ones.
        pending.sort(key=lambda p: (p.record.state != PushState.IMPORTING, p.record.updated_at))
        batch: list[Versioned[IndicatorPush]] = []
        size = 0
        for stored in pending:
            count = len(stored.record.values)
            if batch and (size + count > MAX_BATCH or len(batch) == MAX_PUSHES):
                break
            batch.append(stored)
            size += count
        try:
            outcome = self._push(batch)
        except PortError as exc:  # the engine retries with backoff; the samples' histories say why
            self._note_all(batch, "will retry", f"{type(exc).__name__}: {exc.message[:300]}")
            raise
        more = len(batch) < len(pending)
        return again(0) if more and outcome.done else outcome

    def _push(self, batch: list[Versioned[IndicatorPush]]) -> Outcome:
        ctx = self._ctx
        budget = self._budget()
        now = ctx.now()
        # Look before importing: values never pushed (another's indicator may hold them) and those
        # of a batch whose outcome is uncertain. A refresh of values with known ids needs no look.
        unsure = [v for p in batch for v in p.record.values if v.id is None or p.record.state == PushState.IMPORTING]
        known = self._look_up(unsure) if unsure else {}
        # The tenant limit: count now and then; what we create meanwhile is added to the count.
        if budget.record.counted_at is None or now - budget.record.counted_at > ctx.clock.real(_RECOUNT):
            budget.record.active, budget.record.counted_at = ctx.defender.count_indicators(), now
        if now - budget.record.hour_start >= ctx.clock.real(_HOUR):
            budget.record.hour_start, budget.record.pushed_this_hour = now, 0
        policy = ctx.config.indicators
        taken: list[Versioned[IndicatorPush]] = []
        refused: list[Versioned[IndicatorPush]] = []
        new_total = 0
        pushed = 0
        for stored in batch:
            values = stored.record.values
            new = sum(1 for v in values if v.id is None and _key(v.type, v.value) not in known)
            if budget.record.active + new_total + new > policy.tenant_ceiling:
                refused.append(stored)
                continue
            if budget.record.pushed_this_hour + pushed + len(values) > policy.per_hour_cap and pushed:
                break
            if budget.record.pushed_this_hour + len(values) > policy.per_hour_cap:
                wait = budget.record.hour_start + ctx.clock.real(_HOUR) - now
                self._note_all([stored], "waiting", f"per-hour cap of {policy.per_hour_cap} reached")
                return again(max(wait, ctx.clock.real(60)))
            taken.append(stored)
            new_total += new
            pushed += len(values)
        nonce = secrets.token_hex(6)
        expires = now + policy.expiration_days * 86400.0
        with ctx.changes() as changes:
            for stored in refused:
                push = stored.record
                push.state, push.batch = PushState.REFUSED, None
                push.failure = (
                    f"tenant limit: {budget.record.active} active indicators, ceiling {policy.tenant_ceiling} "
                    f"({policy.tenant_limit} less a headroom of {policy.tenant_headroom})"
                )
                push.updated_at = now
                changes.save(stored)
                changes.record(push.sample_key, STEP, "refused", push.failure)
            for stored in taken:
                push = stored.record
                if push.state != PushState.IMPORTING or push.expires_at is None:
                    push.expires_at, push.rounds = expires, push.rounds + 1
                push.state, push.batch = PushState.IMPORTING, nonce
                push.updated_at = now
                changes.save(stored)
            budget.record.pushed_this_hour += pushed
            changes.save(budget)
        if not taken:
            return DONE
        return self._import(taken, known, budget)

    def _import(
        self,
        taken: list[Versioned[IndicatorPush]],
        known: dict[tuple[str, str], ExistingIndicator],
        budget: Versioned[IndicatorBudget],
    ) -> Outcome:
        ctx = self._ctx
        wanted, holders = self._wanted(taken, known)
        sent = list(wanted.values())
        results: list[ImportResult] = []
        if sent:
            try:
                results = ctx.defender.import_indicators(sent)
            except Rejected as exc:
                return self._rejected(taken, exc)
        by_value = _match(results, sent)
        created = 0
        for key, indicator in wanted.items():
            result = by_value.get(indicator.value.lower())
            ok = result is not None and not result.failed and result.id is not None
            reason = "" if ok else ((result.reason if result is not None else None) or "no answer for it")[:200]
            created += int(ok and all(v.id is None for v in holders[key]))
            for value in holders[key]:
                value.id, value.failure = (result.id, None) if ok and result is not None else (value.id, reason)
        now = ctx.now()
        with ctx.changes() as changes:
            for stored in taken:
                push = stored.record
                push.state, push.batch, push.updated_at = PushState.DONE, None, now
                failed = [v for v in push.values if v.failure]
                push.failure = f"{len(failed)} refused by Defender: {failed[0].failure}" if failed else None
                changes.save(stored)
                detail = f"{len(push.ids)} indicator(s), ids {', '.join(push.ids[:20]) or 'none'}"
                detail += f"; expire {datetime.fromtimestamp(push.expires_at or now, UTC):%Y-%m-%d %H:%M} UTC"
                if push.failure:
                    detail += f"; {push.failure}"
                changes.record(push.sample_key, STEP, "pushed" if push.rounds == 1 else "refreshed", detail)
            budget.record.active += created
            changes.save(budget)
        return DONE

    def _wanted(
        self, taken: list[Versioned[IndicatorPush]], known: dict[tuple[str, str], ExistingIndicator]
    ) -> tuple[dict[tuple[str, str], Indicator], dict[tuple[str, str], list[PushedValue]]]:
        """One indicator per (type, value) to import, however many samples of the batch produced
        it, and the pushed values each one is for."""
        wanted: dict[tuple[str, str], Indicator] = {}
        holders: dict[tuple[str, str], list[PushedValue]] = {}
        for stored in taken:
            push = stored.record
            job = self._ctx.jobs.get(push.sample_key)
            if job is None or job.record.verdict is None:
                continue
            assert push.expires_at is not None
            expires = datetime.fromtimestamp(push.expires_at, UTC)
            theirs = [v for v in push.values if _held_by_another(known.get(_key(v.type, v.value)))]
            if theirs:  # an analyst's (or another tool's) indicator: never overwritten
                push.values = [v for v in push.values if v not in theirs]
                note = f"{len(theirs)} held by another's indicator (left alone)"
                push.skipped = f"{push.skipped}, {note}" if push.skipped else note
            for value in push.values:
                existing = known.get(_key(value.type, value.value))
                if existing is not None and existing.ours and _lasts(existing, expires):
                    value.id, value.failure = existing.id, None  # the lost import had done it
                    continue
                key = _key(value.type, value.value)
                holders.setdefault(key, []).append(value)
                wanted.setdefault(
                    key,
                    render_indicator(
                        self._ctx.config.indicators,
                        job.record.verdict,
                        _type(value.type),
                        value.value,
                        sample=job.record.sha256 or job.record.url or push.sample_key,
                        alert_id=push.alert_id,
                        expires_at=expires,
                    ),
                )
        return wanted, holders

    def _rejected(self, taken: list[Versioned[IndicatorPush]], exc: Rejected) -> Outcome:
        """Defender refused the whole batch: retrying the same bodies would fail the same way."""
        text = f"Defender refused the import: {str(exc)[:300]}"
        with self._ctx.changes() as changes:
            for stored in taken:
                push = stored.record
                push.state, push.batch, push.failure, push.updated_at = PushState.REFUSED, None, text, self._ctx.now()
                changes.save(stored)
                changes.record(push.sample_key, STEP, "failed", text)
        return DONE

    def _note_all(self, pushes: list[Versioned[IndicatorPush]], outcome: str, detail: str) -> None:
        with self._ctx.changes() as changes:
            for stored in pushes:
                changes.record(stored.record.sample_key, STEP, outcome, detail)

    def _look_up(self, values: list[PushedValue]) -> dict[tuple[str, str], ExistingIndicator]:
        """Targeted lookups by value, a few values per request (bounded in count and length)."""
        found: dict[tuple[str, str], ExistingIndicator] = {}
        chunk: list[str] = []
        for name in sorted({v.value for v in values}):
            if chunk and (len(chunk) >= _LOOKUP_CHUNK or sum(map(len, chunk)) + len(name) > _LOOKUP_CHARS):
                found |= self._find(chunk)
                chunk = []
            chunk.append(name)
        return found | (self._find(chunk) if chunk else {})

    def _find(self, names: list[str]) -> dict[tuple[str, str], ExistingIndicator]:
        found: dict[tuple[str, str], ExistingIndicator] = {}
        for existing in self._ctx.defender.find_indicators(names):
            key = _key(existing.type, existing.value)
            if key not in found or existing.ours:  # ours wins where both exist
                found[key] = existing
        return found

    def _budget(self) -> Versioned[IndicatorBudget]:
        stored = self._ctx.budgets.get(TENANT_BATCH)
        if stored is not None:
            return stored
        with self._ctx.changes() as changes:
            changes.create(self._ctx.budgets, TENANT_BATCH, IndicatorBudget())
        created = self._ctx.budgets.get(TENANT_BATCH)
        assert created is not None
        return created


def _key(kind: str, value: str) -> tuple[str, str]:
    return (kind, value if kind == "Url" else value.lower())


def _type(kind: str) -> IndicatorType:
    assert kind in ("FileSha256", "DomainName", "IpAddress", "Url")
    return kind  # type: ignore[return-value]


def _held_by_another(existing: ExistingIndicator | None) -> bool:
    return existing is not None and not existing.ours


def _lasts(existing: ExistingIndicator, expires: datetime) -> bool:
    return existing.expires_at is not None and existing.expires_at >= expires.replace(microsecond=0)


def _match(results: list[ImportResult], sent: list[Indicator]) -> dict[str, ImportResult]:
    """Results by value: in order when Defender answers one per indicator, else by value."""
    if len(results) == len(sent):
        return {indicator.value.lower(): result for indicator, result in zip(sent, results, strict=True)}
    return {result.value.lower(): result for result in results}


def withdraw(ctx: Context, sample_key: str | None) -> list[ExistingIndicator]:
    """Delete the connector's own indicators (of one sample, or all of them) and say so in each
    sample's history. Only indicators Defender shows as ours are touched, whatever the store says."""
    own = {item.id: item for item in ctx.defender.own_indicators() if item.ours}
    pushes = ctx.pushes.list() if sample_key is None else [p for p in [ctx.pushes.get(sample_key)] if p]
    if sample_key is None:
        doomed = list(own.values())
    else:  # not those another sample's push holds too: they stay for that sample
        ids = {i for p in pushes for i in p.record.ids}
        shared = {i for p in ctx.pushes.list() if p.record.sample_key != sample_key for i in p.record.ids}
        doomed = [item for item in own.values() if item.id in ids - shared]
    for start in range(0, len(doomed), MAX_BATCH):
        ctx.defender.delete_indicators([item.id for item in doomed[start : start + MAX_BATCH]])
    gone = {item.id for item in doomed}
    with ctx.changes() as changes:
        for stored in pushes:
            push = stored.record
            withdrawn = [v for v in push.values if v.id in gone]
            if not withdrawn:
                continue
            for value in withdrawn:
                value.id = None
            push.updated_at = ctx.now()
            changes.save(stored)
            changes.record(push.sample_key, STEP, "withdrawn", f"{len(withdrawn)} indicator(s) deleted by request")
    return doomed
