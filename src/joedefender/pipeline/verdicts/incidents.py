"""Verdicts on the Defender XDR incident: `incident:<incident id>`, one step per incident at a time.

With `DefenderIncidentTags` the incident carries one tag of ours naming the worst verdict its
samples have so far (`JoeSandbox:malicious`), replaced as verdicts come in, others' tags left as
they are; with `DefenderIncidentComments`, one comment per sample, as on its alerts. One work item
per incident serialises its steps, so two workers never write its tag at once (each could write
its own last). Triage notes the samples of an alert's incident (`join_incident`); a sample job that
ends wakes the incidents it belongs to (`wake_incidents`).

The comments follow the alert comments' rules (`verdicts.writeback`): the intent (`writing`) is
saved before the call; a comment found `writing` is looked for by its marker among the incident's
comments first; a write whose answer never came is looked for only once it must have landed. The
tag needs no intent: the port reads the tags and writes the whole list only when it differs, so a
repeat changes nothing; an unanswered tag write is left to settle before the tag is written again,
so a late landing cannot put an older verdict back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from joedefender.domain.alerts import Alert
from joedefender.domain.comments import has_marker, job_comment
from joedefender.domain.errors import NotFound, Transient
from joedefender.domain.incidents import (
    Incident,
    IncidentSample,
    IncidentVerdicts,
    usable_incident_id,
    verdict_tag,
    worst_detection,
)
from joedefender.domain.jobs import JobState, LinkState, SampleJob
from joedefender.domain.keys import alert_subject, incident_key, incident_subject
from joedefender.domain.reasons import Cause
from joedefender.pipeline.context import DONE, Context, Outcome, again
from joedefender.pipeline.ports import IncidentPort, VersionConflict
from joedefender.pipeline.records import Changes, Versioned

STEP = "incident"
_TAG, _COMMENT = "incident tag", "incident comment"  # the steps of the incident's history
_RACES = 10  # saves of the incident's record that may lose to triage adding a sample meanwhile


def incident_of(ctx: Context, alert: Alert) -> str | None:
    """The incident whose verdicts the alert's samples join: None when verdicts on incidents are
    off, or the alert has no usable incident id."""
    return usable_incident_id(alert.incident_id) if ctx.config.incident_verdicts else None


def join_incident(ctx: Context, changes: Changes, alert: Alert, sample_keys: Iterable[str]) -> None:
    """In triage's unit of work: the alert's samples join its incident's record, and the incident's
    step looks at them (a sample that has ended already is written at once)."""
    if not ctx.config.incident_verdicts or alert.incident_id is None:
        return
    incident_id = usable_incident_id(alert.incident_id)
    if incident_id is None:
        detail = f"the incident id {alert.incident_id!r} is not a plain id; nothing is written on the incident"
        changes.record(alert_subject(alert.id), STEP, "incident skipped", detail)
        return
    note_samples(ctx, changes, incident_id, sample_keys)


def note_samples(ctx: Context, changes: Changes, incident_id: str, sample_keys: Iterable[str]) -> None:
    """In `changes`: the samples join the incident's record, and its step looks at them."""
    stored = ctx.incident_verdicts.get(incident_id)
    if stored is None:
        record = IncidentVerdicts(incident_id=incident_id)
        record.samples = {key: IncidentSample() for key in sample_keys}
        changes.create(ctx.incident_verdicts, incident_id, record)
    else:
        new = [key for key in sample_keys if key not in stored.record.samples]
        if not new:
            return
        stored.record.samples.update({key: IncidentSample() for key in new})
        changes.save(stored)
    changes.enqueue(incident_key(incident_id))


def wake_incidents(changes: Changes, job: SampleJob) -> None:
    """In the unit of work that ends `job`: its incidents' steps look again."""
    for incident_id in job.incidents:
        changes.enqueue(incident_key(incident_id))


class IncidentWork:
    """`incident:<incident id>`."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def give_up(self, incident_id: str, cause: Cause) -> None:
        """Nothing to end: what is not written yet is tried again when a sample of the incident
        next ends (a comment left `writing` is looked for first)."""

    def run(self, incident_id: str) -> Outcome:
        ctx = self._ctx
        port = ctx.incidents
        stored = ctx.incident_verdicts.get(incident_id)
        if port is None or stored is None:
            return DONE
        jobs = (ctx.jobs.get(key) for key in stored.record.samples)
        # Samples that ended with something to say (a path job that resolved leaves that to the job
        # of its file's hash, which the incident holds too).
        ended = (JobState.DONE, JobState.FAILED)
        final = {job.record.key: job.record for job in jobs if job is not None and job.record.state in ended}
        if not final:
            return DONE  # each sample's job wakes the incident when it ends
        try:
            waits = _Tag(ctx, port).write(stored, final) if ctx.config.incident_tags else []
            if ctx.config.incident_comments:
                waits += _Comments(ctx, port).write(stored, final)
        except NotFound:
            ctx.record(incident_subject(incident_id), STEP, "incident not found", "nothing written on it")
            return DONE
        return again(min(waits) - ctx.now()) if waits else DONE


# One history line: (step, outcome, detail), on the incident.
Line = tuple[str, str, str]


def _save(
    ctx: Context, stored: Versioned[IncidentVerdicts], change: Callable[[IncidentVerdicts], None], line: Line | None
) -> None:
    """Make `change` to the incident's record and save it (with its history line); a save lost to
    triage adding a sample meanwhile reads the record again and makes the change again."""
    for _ in range(_RACES):
        change(stored.record)
        try:
            with ctx.changes() as changes:
                changes.save(stored)
                if line is not None:
                    changes.record(incident_subject(stored.record.incident_id), *line)
            return
        except VersionConflict:
            fresh = ctx.incident_verdicts.get(stored.doc.key)
            if fresh is None:
                raise
            stored.record, stored.doc = fresh.record, fresh.doc
    raise VersionConflict(ctx.incident_verdicts.kind, stored.doc.key, stored.doc.version)


class _Tag:
    """Our tag names the worst verdict of the incident's samples that have one."""

    def __init__(self, ctx: Context, port: IncidentPort) -> None:
        self._ctx = ctx
        self._port = port

    def write(self, stored: Versioned[IncidentVerdicts], jobs: Mapping[str, SampleJob]) -> list[float]:
        """Tag the incident unless it is tagged so already; the times from which to look again."""
        ctx, record = self._ctx, stored.record
        worst = worst_detection(
            job.verdict.detection for job in jobs.values() if job.state == JobState.DONE and job.verdict is not None
        )
        if worst is None or worst == record.tagged:
            return []
        if record.tag_settles_at is not None and record.tag_settles_at > ctx.now():
            return [record.tag_settles_at]  # a tag write not answered may still land: not before it
        tag = verdict_tag(worst)
        try:
            self._port.tag_incident(record.incident_id, tag)
        except Transient as exc:
            if exc.settles_in is None:
                raise
            settles_at = ctx.now() + exc.settles_in
            detail = f"{tag}: Graph did not answer; the tag is looked at again in {exc.settles_in:g} s"
            _save(ctx, stored, lambda r: setattr(r, "tag_settles_at", settles_at), (_TAG, "outcome unknown", detail))
            return [settles_at]

        def tagged(r: IncidentVerdicts) -> None:
            r.tagged, r.tag_settles_at = worst, None

        _save(ctx, stored, tagged, (_TAG, "tagged", tag))
        return []


class _Comments:
    """One incident step's comments: one per final sample, exactly once."""

    def __init__(self, ctx: Context, port: IncidentPort) -> None:
        self._ctx = ctx
        self._port = port
        self._incident: Incident | None = None  # read once a step, when a comment must be looked for

    def write(self, stored: Versioned[IncidentVerdicts], jobs: Mapping[str, SampleJob]) -> list[float]:
        """Comment every final sample not commented yet; the times from which to look again."""
        waits: list[float] = []
        for key, job in jobs.items():
            sample = stored.record.samples.get(key)
            if sample is None or sample.state == LinkState.COMMENTED:
                continue
            if sample.state == LinkState.WRITING:
                if sample.settles_at is not None and sample.settles_at > self._ctx.now():
                    waits.append(sample.settles_at)  # a write still in flight: too early to look
                    continue
                if self._there(stored.record.incident_id, key):
                    self._commented(stored, key, "already commented")
                    continue
            settles_at = self._write(stored, job)
            if settles_at is not None:
                waits.append(settles_at)
        return waits

    def _there(self, incident_id: str, key: str) -> bool:
        if self._incident is None:
            self._incident = self._port.get_incident(incident_id)
        return has_marker(self._incident.comments, key)

    def _write(self, stored: Versioned[IncidentVerdicts], job: SampleJob) -> float | None:
        """Comment the sample; None when done, or the time from which to look whether a write
        whose answer never came has landed after all."""
        ctx, key = self._ctx, job.key
        # The intent first: the incident may have this sample's comment from here on.
        _save(ctx, stored, lambda r: r.samples.update({key: IncidentSample(state=LinkState.WRITING)}), None)
        try:
            self._port.comment_incident(stored.record.incident_id, job_comment(job, None))
        except Transient as exc:
            if exc.settles_in is None:
                raise
            settles_at = ctx.now() + exc.settles_in
            settling = IncidentSample(state=LinkState.WRITING, settles_at=settles_at)
            detail = f"{key}: Graph did not answer; the incident's comments are read back in {exc.settles_in:g} s"
            _save(ctx, stored, lambda r: r.samples.update({key: settling}), (_COMMENT, "outcome unknown", detail))
            return settles_at
        self._commented(stored, key, "commented")
        return None

    def _commented(self, stored: Versioned[IncidentVerdicts], key: str, outcome: str) -> None:
        done = IncidentSample(state=LinkState.COMMENTED, commented_at=self._ctx.now())
        _save(self._ctx, stored, lambda r: r.samples.update({key: done}), (_COMMENT, outcome, key))
