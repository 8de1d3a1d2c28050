"""Write-back: exactly one comment per (alert, sample), written for all of a sample's alerts at once.

A job that ends asks for one write-back of its sample (`comment:<sample key>`); it writes every
link still waiting, the alerts that get the same text together in one batchUpdate (its own
10/min, 500/hour budget, beside the alerts' 100/min, 1,500/hour), a lone alert or a text of its
own by PATCH. The intent is saved before the call: the links go `writing` in one unit of work. A
link found `writing` may have its comment on the alert already (a crash, or an answer that was
lost), so the comments of all such alerts are read back first, in bulk, and the marker (the
comment's whole last line) decides; a `pending` link is written straight away, which saves a
read for every comment.
"""

from __future__ import annotations

from collections.abc import Sequence

from joedefender.domain.comments import has_marker, job_comment
from joedefender.domain.errors import NotFound, Transient
from joedefender.domain.jobs import AlertSampleLink, LinkState, SampleJob
from joedefender.domain.keys import alert_subject, classify_key, link_prefix
from joedefender.domain.reasons import Cause
from joedefender.pipeline.context import DONE, Context, Outcome, again
from joedefender.pipeline.pacing import StartPace
from joedefender.pipeline.ports import Start
from joedefender.pipeline.records import Versioned
from joedefender.pipeline.verdicts.classify import wants_classification

# Nominal seconds that alerts joining a sample after its comment went out wait for each other:
# they are written together, one batchUpdate a sample per minute at the most (of the budget's
# ten), however late they come and whichever instance triages them, instead of one PATCH each
# from the alerts' own budget.
LATE_JOINERS_WAIT = 60.0


def late_joiners_wait(ctx: Context) -> float:
    """How long (nominal seconds) a write-back for an alert joining a final job waits for
    others to join it; none when the alert source writes comments one by one anyway."""
    return LATE_JOINERS_WAIT if ctx.defender.batches_comments else 0.0


def comment_text(job: SampleJob, link: AlertSampleLink) -> str:
    file_name = next((c.file_name for c in job.candidates if c.alert_id == link.alert_id), None)
    return job_comment(job, file_name, link.origin)


class WriteBack:
    """`comment:<sample key>` (or, from a queue of before, `comment:<link key>`)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._batches = StartPace(ctx.config.alert_batch_updates_per_minute)

    def give_up(self, subject: str, cause: Cause) -> None:
        """Nothing to end: the links stay as they are, and the next final job's write-back (or
        the next alert linked to the sample) asks again."""

    def run(self, subject: str) -> Outcome:
        """`subject` is a sample key (all its links), or one link's key (a queue from before)."""
        ctx = self._ctx
        sample_key, _, alert_id = subject.partition("|")
        job = ctx.jobs.get(sample_key)
        if job is None or not job.record.state.final:
            return DONE  # the job announces itself when it ends
        if alert_id:
            found = ctx.links.get(subject)
            links = [found] if found is not None else []
        else:
            links = ctx.links.list(prefix=link_prefix(sample_key))
        waiting = [link for link in links if not link.record.state.settled]
        if not waiting:
            return DONE
        # A write that may still be in flight is left alone until it must have landed.
        now = ctx.now()
        unsettled = [link.record.settles_at or now for link in waiting if _settling(link.record, now)]
        waiting = self._read_back(job.record, [link for link in waiting if not _settling(link.record, now)])
        groups: dict[str, list[Versioned[AlertSampleLink]]] = {}
        for link in waiting:
            groups.setdefault(comment_text(job.record, link.record), []).append(link)
        # Larger groups first: a lone alert that Defender no longer knows must not hold them up.
        for text, group in sorted(groups.items(), key=lambda item: -len(item[1])):
            if len(group) > 1 and ctx.defender.batches_comments:
                # batchUpdate's own budget: wait for this sample's turn without holding a worker.
                turn = self._batches.wait(sample_key, ctx.now(), ctx.clock.real(60), self._batch_turn)
                if turn > 0:
                    return again(turn)
            if (settles := self._write(job.record, group, text)) is not None:
                unsettled.append(settles)
        return again(max(0.0, min(unsettled) - ctx.now())) if unsettled else DONE

    def _batch_turn(self) -> float:
        """The turn of batchUpdate in the tenant's budget (other instances' batches included)."""
        return self._ctx.defender.start_turn(Start.COMMENT_BATCH)

    def _read_back(self, job: SampleJob, waiting: list[Versioned[AlertSampleLink]]) -> list[Versioned[AlertSampleLink]]:
        """Mark the `writing` links whose comment is on the alert already; the links left to write."""
        writing = [link for link in waiting if link.record.state == LinkState.WRITING]
        if not writing:
            return waiting
        alerts = {a.id: a for a in self._ctx.defender.get_alerts([link.record.alert_id for link in writing])}
        there = [
            link
            for link in writing
            if link.record.alert_id in alerts and has_marker(alerts[link.record.alert_id].comments, job.key)
        ]
        if there:
            self._commented(job, there, "already commented", job.key)
        done = {id(link) for link in there}
        return [link for link in waiting if id(link) not in done]

    def _write(self, job: SampleJob, group: Sequence[Versioned[AlertSampleLink]], text: str) -> float | None:
        """Write `text` on the group's alerts; None when done, or the time from which to look
        whether a write whose answer never came has landed after all."""
        ctx = self._ctx
        fresh = [link for link in group if link.record.state != LinkState.WRITING]
        if fresh:
            for link in fresh:
                link.record.state = LinkState.WRITING
            with ctx.changes() as changes:  # the intent: these alerts get this text
                for link in fresh:
                    changes.save(link)
        alert_ids = [link.record.alert_id for link in group]
        try:
            if len(alert_ids) == 1:
                ctx.defender.add_comment(alert_ids[0], text)
            else:
                try:
                    ctx.defender.comment_alerts(alert_ids, text)
                except NotFound:
                    # An alert of the batch is gone (the emulator refuses the whole batch then; the
                    # docs are silent): the others one by one, after looking which have it already.
                    later = [self._write(job, [link], text) for link in self._read_back(job, list(group))]
                    return min((t for t in later if t is not None), default=None)
        except Transient as exc:
            if exc.settles_in is None:
                raise
            return self._unanswered(group, exc.settles_in)
        how = "" if len(alert_ids) == 1 else f", one of {len(alert_ids)} in a batch"
        self._commented(job, group, "commented", f"{job.key} ({job.state.value}){how}")
        return None

    def _unanswered(self, group: Sequence[Versioned[AlertSampleLink]], settles_in: float) -> float:
        """The write went out and no answer came: Defender may still apply it. Its comments are
        read back only once it must have landed; reading them now could miss it and write twice."""
        ctx = self._ctx
        settles_at = ctx.now() + settles_in
        with ctx.changes() as changes:
            for link in group:
                link.record.settles_at = settles_at
                changes.save(link)
                changes.record(
                    alert_subject(link.record.alert_id),
                    "write-back",
                    "outcome unknown",
                    f"Defender did not answer; the alert's comments are read back in {settles_in:g} s",
                )
        return settles_at

    def _commented(
        self, job: SampleJob, links: Sequence[Versioned[AlertSampleLink]], outcome: str, detail: str
    ) -> None:
        ctx = self._ctx
        now = ctx.now()
        classify = wants_classification(ctx, job)
        with ctx.changes() as changes:
            for link in links:
                link.record.state = LinkState.COMMENTED
                link.record.commented_at = now
                changes.save(link)
                changes.record(alert_subject(link.record.alert_id), "write-back", outcome, detail)
                if classify:  # after the comment, never in its way
                    changes.enqueue(classify_key(link.doc.key))


def _settling(link: AlertSampleLink, now: float) -> bool:
    """A write of this link went unanswered and may still land: too early to look for it."""
    return link.state == LinkState.WRITING and link.settles_at is not None and link.settles_at > now
