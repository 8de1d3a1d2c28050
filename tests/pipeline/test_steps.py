"""The steps on in-memory ports: each path of the sample job's state machine, fast.

The engine runs on the in-memory store and the fakes of Defender and Joe Sandbox, on a clock the
test moves to the next due time instead of sleeping. What the real APIs do over sockets is tested
end to end against the emulators (tests/pipeline/test_end_to_end.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from joedefender.adapters.memory import MemoryStore
from joedefender.domain.alerts import Alert, Evidence
from joedefender.domain.comments import marker
from joedefender.domain.errors import NotAllowed, QuotaExhausted, Rejected, Throttled, Transient
from joedefender.domain.jobs import AlertState, Attempt, JobState, LinkState, SampleJob
from joedefender.domain.policy import ResubmitPolicy
from joedefender.domain.retry import RetryPolicy
from joedefender.domain.verdicts import Verdict
from joedefender.endpoint import contract
from joedefender.pipeline import dimensions
from joedefender.pipeline.clock import Clock as ScaledClock
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.context import Context
from joedefender.pipeline.facade import Application
from joedefender.pipeline.ports import UnitOfWork
from joedefender.pipeline.quota import parked_until
from tests.fakes import FakeDefender, FakeIncidents, FakeSandbox, file_alert, url_alert

M1, M2 = "1" * 40, "2" * 40
PAYLOAD = b"MZ pretend payload"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Clock:
    t: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Rig:
    defender: FakeDefender = field(default_factory=FakeDefender)
    sandbox: FakeSandbox = field(default_factory=FakeSandbox)
    clock: Clock = field(default_factory=Clock)
    config: PipelineConfig = field(default_factory=PipelineConfig)
    scale: float = 1.0  # real seconds per nominal second
    incidents: FakeIncidents | None = None  # with verdicts on incidents
    store: MemoryStore = field(init=False)
    app: Application = field(init=False)

    def __post_init__(self) -> None:
        self.store = MemoryStore(clock=self.clock)
        clock = ScaledClock(scale=self.scale, source=self.clock)
        ctx = Context(self.store, self.defender, self.sandbox, self.config, clock, incidents=self.incidents)
        self.app = Application(ctx)

    @property
    def ctx(self) -> Context:
        return self.app.ctx

    def receive(self, *alerts: Alert) -> None:
        for alert in alerts:
            self.defender.add_alert(alert)
            self.app.receive(alert.id, source="test")

    def drain(self, max_steps: int = 2000) -> None:
        """Run due steps, moving the clock to the next due time when nothing is due."""
        for _ in range(max_steps):
            if self.app.run_next("worker"):
                continue
            due = self.store.next_due()
            if due is None:
                return
            self.clock.t = max(self.clock.t, due)
        raise AssertionError(f"not idle after {max_steps} steps: {[i.key for i in self.store.items()]}")

    def job(self, key: str = f"sha256:{SHA}") -> SampleJob:
        stored = self.ctx.jobs.get(key)
        assert stored is not None
        return stored.record

    def history(self, subject: str) -> list[tuple[str, str]]:
        return [(h.step, h.outcome) for h in self.store.history(subject)]


def _ours(comments: tuple[str, ...], key: str = f"sha256:{SHA}") -> list[str]:
    return [c for c in comments if c.endswith(marker(key))]


def test_a_file_on_disk_is_collected_submitted_and_commented_once() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = PAYLOAD
    rig.sandbox.verdicts[SHA] = ("malicious", 91)
    rig.receive(file_alert("a1", M1, PAYLOAD), file_alert("a2", M1, PAYLOAD))
    rig.drain()

    job = rig.job()
    assert job.state == JobState.DONE
    assert job.verdict is not None
    assert (job.verdict.detection, job.verdict.score) == ("malicious", 91)
    assert [s.sha256 for s in rig.sandbox.submissions] == [SHA]
    assert len(rig.defender.actions) == 1
    for alert_id in ("a1", "a2"):
        (comment,) = _ours(rig.defender.comments(alert_id))
        assert comment.startswith("Joe Sandbox: MALICIOUS (score 91/100)")
    steps = rig.history(job.key)
    assert ("collect", "collected") in steps
    assert ("analysis", "finished") in steps


def test_a_known_verdict_is_reused_when_the_policy_says_never() -> None:
    rig = Rig(config=PipelineConfig(resubmit=ResubmitPolicy("never")))
    rig.sandbox.known[SHA] = [Verdict(detection="suspicious", score=60, webid="7", link="https://joe.example/7")]
    rig.defender.add_machine(M1)
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()

    assert rig.job().state == JobState.DONE
    assert rig.job().verdict_source == "lookup"
    assert rig.sandbox.submissions == []
    assert rig.defender.actions == {}
    (comment,) = _ours(rig.defender.comments("a1"))
    assert "SUSPICIOUS (score 60/100)" in comment
    assert "already analysed" in comment


def test_a_url_is_submitted_as_a_url() -> None:
    rig = Rig()
    url = "http://phish.example/login"
    rig.sandbox.verdicts[url] = ("malicious", 80)
    rig.receive(url_alert("a1", url))
    rig.drain()

    (submission,) = rig.sandbox.submissions
    assert submission.url == url
    assert submission.sha256 is None
    (job,) = [j.record for j in rig.ctx.jobs.list()]
    assert job.state == JobState.DONE
    (comment,) = _ours(rig.defender.comments("a1"), job.key)
    assert f"URL: {url}" in comment


def _av_alert(alert_id: str = "a1", machine: str = M1) -> Alert:
    return file_alert(alert_id, machine, PAYLOAD, detection_source="WindowsDefenderAv", detection_status="Prevented")


def _scripts(rig: Rig) -> list[str]:
    return [f"{c.target} {c.args}" for a in rig.defender.actions.values() for c in a.commands if c.kind == "RunScript"]


def test_a_quarantined_file_is_located_fetched_encrypted_and_decoded_here() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    other = b"another quarantined file"
    rig.defender.quarantine[M1] = {hashlib.sha256(other).hexdigest(): other, SHA: PAYLOAD}
    rig.receive(_av_alert())
    rig.drain()

    job = rig.job()
    assert job.state == JobState.DONE
    assert [a.strategy for a in job.attempts] == ["locate"]
    (attempt,) = job.attempts
    assert attempt.stage == "fetch"
    assert len(attempt.fetch_paths) == 2
    assert attempt.delivered_index == 1  # the first entry decoded to another file's bytes
    assert [s.sha256 for s in rig.sandbox.submissions] == [SHA]
    # Only the read-only locator ran: nothing decoded, restored or written on the endpoint, no cleanup.
    assert _scripts(rig) == [f"joedefender-locate.ps1 -JobId {attempt.nonce}"]
    assert set(rig.defender.library) == {"joedefender-locate.ps1"}
    history = rig.store.history(job.key)
    assert any(h.outcome == "located" for h in history)
    (collected,) = [h for h in history if h.outcome == "collected"]
    assert "by locate" in collected.detail
    assert rig.history(f"endpoint:{M1}") == []


def test_the_entries_files_pick_the_resource_data_of_the_evidences_path_among_newer_ones() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    others = [f"newer quarantined file {n}".encode() for n in range(10)]
    rig.defender.quarantine[M1] = {SHA: PAYLOAD, **{hashlib.sha256(o).hexdigest(): o for o in others}}
    rig.defender.quarantine_paths[SHA] = "c:\\USERS\\u\\X.EXE"  # Windows paths compare case-insensitively
    rig.receive(_av_alert())
    rig.drain()

    job = rig.job()
    assert job.state == JobState.DONE
    (attempt,) = job.attempts
    assert (attempt.strategy, attempt.stage) == ("locate", "fetch")
    (wanted,) = [q.resource_path for q in rig.defender._quarantined(M1) if q.payload_sha256 == SHA]
    assert attempt.fetch_paths == [wanted]
    assert [s.sha256 for s in rig.sandbox.submissions] == [SHA]
    assert _scripts(rig) == [f"joedefender-locate.ps1 -JobId {attempt.nonce}"]
    # Two actions: the locator printed the Entries files, so none was fetched.
    assert [a.commands[0].kind for a in rig.defender.actions.values()] == ["RunScript", "GetFile"]
    assert ("collect", "selected") not in rig.history(job.key)
    (located,) = [h for h in rig.store.history(job.key) if h.outcome == "located"]
    assert located.detail.endswith("; entries matched: 11 Entries files read; fetching 1")


def test_when_no_entry_names_the_evidence_the_newest_listed_are_fetched() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.quarantine[M1] = {SHA: PAYLOAD}  # quarantined from another path than the evidence's
    rig.receive(_av_alert())
    rig.drain()

    job = rig.job()
    assert job.state == JobState.DONE
    assert job.attempts[0].fetch_paths == [q.resource_path for q in rig.defender._quarantined(M1)]
    (located,) = [h for h in rig.store.history(job.key) if h.outcome == "located"]
    assert "; listing fallback (1 of 1 Entries files read, none names the evidence); fetching 1" in located.detail
    assert len(rig.defender.actions) == 2


def test_entries_files_the_locator_could_not_print_are_fetched_in_an_action_between() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.quarantine[M1] = {SHA: PAYLOAD}
    rig.defender.quarantine_paths[SHA] = "C:\\Users\\u\\x.exe"
    rig.defender.unprinted_entries = True
    rig.receive(_av_alert())
    rig.drain()

    job = rig.job()
    assert job.state == JobState.DONE
    kinds = [[c.kind for c in a.commands] for a in rig.defender.actions.values()]
    assert kinds == [["RunScript"], ["GetFile"], ["GetFile"]]
    (selected,) = [h for h in rig.store.history(job.key) if h.outcome == "selected"]
    assert selected.detail == "entries matched: 1 Entries files read; fetching 1"


def test_when_getfile_on_the_quarantine_is_refused_the_on_endpoint_decode_delivers() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.quarantine[M1] = {SHA: PAYLOAD}
    rig.defender.refuse_quarantine_getfile = True
    rig.receive(_av_alert())
    rig.drain()

    job = rig.job()
    assert job.state == JobState.DONE
    assert [(a.strategy, a.outcome) for a in job.attempts] == [("locate", "failed"), ("quarantine", "collected")]
    assert [s.sha256 for s in rig.sandbox.submissions] == [SHA]
    assert any("-Mode Collect" in s for s in _scripts(rig))
    assert any("-Mode Cleanup" in s for s in _scripts(rig))
    assert not any("-Mode Restore" in s for s in _scripts(rig))
    assert ("cleanup", "cleaned") in rig.history(f"endpoint:{M1}")


def test_restore_is_never_tried_unless_allowed() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.quarantine[M1] = {SHA: PAYLOAD}
    rig.defender.refuse_quarantine_getfile = True
    rig.defender.decode_fails.add(M1)
    rig.receive(_av_alert())
    rig.drain()

    job = rig.job()
    assert job.state == JobState.FAILED
    assert [a.strategy for a in job.attempts] == ["locate", "quarantine", "getfile"]
    assert rig.defender.restored == []
    assert not any("Restore" in s for s in _scripts(rig))


def test_restore_when_allowed_comes_last_and_says_so() -> None:
    rig = Rig(config=PipelineConfig(allow_quarantine_restore=True))
    rig.defender.add_machine(M1)
    rig.defender.quarantine[M1] = {SHA: PAYLOAD}
    rig.defender.refuse_quarantine_getfile = True
    rig.defender.decode_fails.add(M1)
    rig.receive(_av_alert())
    rig.drain()

    job = rig.job()
    assert job.state == JobState.DONE
    assert [a.strategy for a in job.attempts] == ["locate", "quarantine", "getfile", "restore"]
    assert rig.defender.restored == [(M1, SHA)]
    (restore,) = [s for s in _scripts(rig) if "-Mode Restore" in s]
    assert restore.split(" -OriginalPathHex ")[1] == b"C:\\Users\\u\\x.exe".hex()
    (collected,) = [h for h in rig.store.history(job.key) if h.outcome == "collected"]
    assert "by restore" in collected.detail


def test_a_damaged_quarantine_entry_is_skipped_not_fatal() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.quarantine[M1] = {SHA: PAYLOAD}
    real = rig.defender._encrypted_quarantine

    def with_a_damaged_one(machine_id: str) -> dict[str, bytes]:
        files = real(machine_id)
        damaged = {f"{contract.resource_data_root()}\\AB\\{'AB' * 20}": b"\x00" * 50}
        return {**damaged, **files}

    rig.defender._encrypted_quarantine = with_a_damaged_one  # type: ignore[method-assign]
    rig.receive(_av_alert())
    rig.drain()

    job = rig.job()
    assert job.state == JobState.DONE
    assert [a.strategy for a in job.attempts] == ["locate"]
    assert job.attempts[0].delivered_index == 1


def test_a_file_nowhere_to_be_found_fails_with_a_comment_naming_the_reason() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()

    job = rig.job()
    assert job.state == JobState.FAILED
    assert job.failure is not None
    assert job.failure.text.startswith("could not collect the file: getfile on")
    (comment,) = _ours(rig.defender.comments("a1"))
    assert comment.startswith("Joe Sandbox: not analysed\nReason: could not collect the file")


def test_an_av_file_missing_from_every_quarantine_says_so() -> None:
    rig = Rig()
    for machine in (M1, M2):
        rig.defender.add_machine(machine)
    rig.receive(
        file_alert("a1", M1, PAYLOAD, detection_source="WindowsDefenderAv", detection_status="Blocked"),
        file_alert("a2", M2, PAYLOAD, detection_source="WindowsDefenderAv", detection_status="Blocked"),
    )
    rig.drain()

    job = rig.job()
    assert job.failure is not None
    assert job.failure.text.startswith("quarantine entry not found on any machine")
    assert all(_ours(rig.defender.comments(a)) for a in ("a1", "a2"))


def test_an_alert_that_names_no_machine_fails_its_file_job() -> None:
    rig = Rig()
    rig.receive(replace(file_alert("a1", M1, PAYLOAD), machine_id=None))
    rig.drain()
    job = rig.job()
    assert job.state == JobState.FAILED
    assert job.failure is not None
    assert job.failure.text == "no machine is known to carry the file"


def test_a_failed_job_reopens_when_a_new_machine_carries_the_file() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.add_machine(M2)
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    assert rig.job().state == JobState.FAILED

    rig.defender.files[(M2, "C:\\Users\\u\\x.exe")] = PAYLOAD
    rig.receive(file_alert("a2", M2, PAYLOAD))
    rig.drain()

    assert rig.job().state == JobState.DONE
    assert ("job", "reopened") in rig.history(rig.job().key)
    assert len(_ours(rig.defender.comments("a2"))) == 1


def test_a_busy_machine_is_waited_for_and_an_offline_one_skipped() -> None:
    rig = Rig()
    rig.defender.add_machine(M1, online=False)
    rig.defender.add_machine(M2)
    rig.defender.held.add(M2)
    rig.defender.files[(M2, "C:\\Users\\u\\x.exe")] = PAYLOAD
    rig.receive(file_alert("a1", M1, PAYLOAD), file_alert("a2", M2, PAYLOAD))
    for _ in range(30):
        rig.app.run_next("worker")
    assert ("collect", "machine busy") in rig.history(rig.job().key)
    rig.defender.held.clear()
    rig.drain()
    assert rig.job().state == JobState.DONE
    assert {a.machine_id for a in rig.defender.actions.values()} == {M2}


def test_live_response_not_allowed_ends_the_job_with_the_reason() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.fail("run_live_response", NotAllowed("Live response is disabled", service="defender"))
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    job = rig.job()
    assert job.failure is not None
    assert job.failure.text == "live response is not allowed: Live response is disabled"
    assert rig.store.holder(M1, rig.clock()) is None


def test_a_throttled_live_response_is_withdrawn_and_tried_after_the_hint() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = PAYLOAD
    rig.defender.fail("run_live_response", Throttled("429", service="defender", retry_after=7.0))
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    job = rig.job()
    assert job.state == JobState.DONE
    assert [a.number for a in job.attempts] == [1]  # the throttled try left no attempt behind
    assert rig.defender.calls["run_live_response"] == 2


def test_a_live_response_whose_answer_was_lost_is_found_by_its_nonce() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = PAYLOAD
    rig.defender.fail("run_live_response", Transient("dropped", service="defender", maybe_applied=True), after=True)
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    assert rig.job().state == JobState.DONE
    assert len(rig.defender.actions) == 1
    assert ("collect", "recovered") in rig.history(rig.job().key)


@pytest.mark.parametrize("stage", ["entries", "fetch"])
def test_a_lost_answer_to_the_locate_strategys_entries_or_fetch_action_is_found_by_its_nonce(stage: str) -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.quarantine[M1] = {SHA: PAYLOAD}
    rig.defender.unprinted_entries = stage == "entries"  # so that an action fetches them
    start = rig.defender.run_live_response
    lost: list[str] = []

    def lose_the_answer(machine_id: str, commands: Any, comment: str) -> Any:
        action = start(machine_id, commands, comment)
        if f"(locate, {stage})" in comment and not lost:
            lost.append(action.id)
            raise Transient("dropped", service="defender", maybe_applied=True)
        return action

    rig.defender.run_live_response = lose_the_answer  # type: ignore[method-assign]
    rig.receive(_av_alert())
    rig.drain()

    job = rig.job()
    assert job.state == JobState.DONE
    assert len(lost) == 1
    # The locator's, the Entries fetch (when it could not print them) and the ResourceData fetch:
    # the lost one not started twice.
    assert len(rig.defender.actions) == (3 if stage == "entries" else 2)
    (recovered,) = [h for h in rig.store.history(job.key) if h.outcome == "recovered"]
    assert recovered.detail == f"action {lost[0]} found by its nonce"


def test_a_submission_whose_answer_was_lost_is_found_by_its_marker() -> None:
    rig = Rig()
    url = "http://phish.example/"
    rig.sandbox.fail("submit_url", Transient("connection reset", service="joe"), after=True)
    rig.receive(url_alert("a1", url))
    rig.drain()
    assert len(rig.sandbox.submissions) == 1
    (job,) = [j.record for j in rig.ctx.jobs.list()]
    assert job.state == JobState.DONE
    assert ("submit", "recovered") in rig.history(job.key)


def test_a_comment_whose_answer_was_lost_is_not_written_twice() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = PAYLOAD
    rig.defender.fail("add_comment", Transient("timed out", service="defender", maybe_applied=True), after=True)
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    assert len(_ours(rig.defender.comments("a1"))) == 1
    assert ("write-back", "already commented") in rig.history("alert:a1")
    (link,) = rig.ctx.links.list()
    assert link.record.state == LinkState.COMMENTED


def _give_up_quickly() -> PipelineConfig:
    return PipelineConfig(step_retry=RetryPolicy(max_retries=2, first=1.0, cap=1.0, jitter="none"))


@pytest.mark.parametrize(
    ("method", "state_when_given_up"),
    [("lookup", JobState.LOOKUP), ("get_action", JobState.COLLECTING), ("submit_file", JobState.SUBMIT)],
)
def test_a_step_that_keeps_failing_is_given_up_with_a_comment(method: str, state_when_given_up: JobState) -> None:
    rig = Rig(config=_give_up_quickly())
    rig.defender.add_machine(M1)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = PAYLOAD
    for port in (rig.defender, rig.sandbox):
        port.fail(method, Transient("service unavailable", service="test"), times=50)
    seen: list[JobState] = []
    original = SampleJob.move_to

    def spy(job: SampleJob, target: JobState) -> None:
        if target == JobState.FAILED:
            seen.append(job.state)
        original(job, target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SampleJob, "move_to", spy)
        rig.receive(file_alert("a1", M1, PAYLOAD))
        rig.drain()
    job = rig.job()
    assert job.state == JobState.FAILED
    assert seen == [state_when_given_up]
    assert job.failure is not None
    assert job.failure.text.startswith("gave up after 2 failed tries")
    (comment,) = _ours(rig.defender.comments("a1"))
    assert "gave up after 2 failed tries" in comment


def test_an_analysis_that_never_finishes_times_out() -> None:
    rig = Rig(sandbox=FakeSandbox(analysis_polls=10_000), config=PipelineConfig(analysis_timeout=600.0))
    rig.defender.add_machine(M1)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = PAYLOAD
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()
    job = rig.job()
    assert job.failure is not None
    assert job.failure.text == "the analysis did not finish within 10 minutes"
    assert len(_ours(rig.defender.comments("a1"))) == 1


def test_a_file_job_in_submit_without_a_collected_file_collects_again() -> None:
    """A submit whose collected attempt is gone (say, a record written by an older version)."""
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = PAYLOAD
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.app.run_next("worker")  # triage
    stored = rig.ctx.jobs.get(f"sha256:{SHA}")
    assert stored is not None
    stored.record.state = JobState.SUBMIT
    stored.record.attempts = [
        Attempt(number=1, machine_id=M1, strategy="quarantine", nonce="n1", started_at=0, outcome="failed")
    ]
    with rig.ctx.changes() as changes:
        changes.save(stored)
    rig.drain()
    assert rig.job().state == JobState.DONE
    assert [a.outcome for a in rig.job().attempts] == ["failed", "collected"]


class _CrashOnce:
    """A store whose `n`th unit of work dies in its commit, as a process killed there would."""

    def __init__(self, store: MemoryStore, n: int) -> None:
        self._store, self._left = store, n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def unit_of_work(self) -> UnitOfWork:
        uow = self._store.unit_of_work()
        self._left -= 1
        if self._left == 0:
            uow.commit = _crash  # type: ignore[method-assign]
        return uow


def _crash() -> Any:
    raise SystemExit("killed in commit")


@pytest.mark.parametrize("n", range(1, 40))
def test_a_crash_in_any_commit_leaves_nothing_half_done(n: int) -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = PAYLOAD
    rig.defender.add_alert(file_alert("a1", M1, PAYLOAD))
    crashing = _CrashOnce(rig.store, n)
    engine = Application(Context(crashing, rig.defender, rig.sandbox, rig.config, ScaledClock(source=rig.clock)))
    try:
        engine.receive("a1", source="test")
        for _ in range(200):
            if not engine.run_next("doomed"):
                due = rig.store.next_due()
                if due is None:
                    break
                rig.clock.t = max(rig.clock.t, due)
    except SystemExit:
        rig.clock.t += rig.config.step_lease + 1  # the dead worker's lease runs out
    rig.app.receive("a1", source="test")  # the sender's retry, when intake was what died
    rig.drain()

    assert rig.ctx.alerts.get("a1") is not None
    assert rig.ctx.alerts.get("a1").record.state == AlertState.ACCEPTED  # type: ignore[union-attr]
    assert rig.job().state == JobState.DONE
    assert len(_ours(rig.defender.comments("a1"))) == 1
    assert len(rig.sandbox.submissions) == 1


def test_the_poller_takes_in_what_passes_the_filters() -> None:
    rig = Rig()
    now = datetime.fromtimestamp(rig.clock(), UTC)
    recent = now - timedelta(minutes=5)
    rig.defender.add_alert(replace(file_alert("a1", M1, PAYLOAD), last_update_time=recent))
    rig.defender.add_alert(
        replace(file_alert("a2", M1, PAYLOAD), last_update_time=recent, detection_source="CustomDetection")
    )
    rig.defender.add_alert(replace(file_alert("a3", M1, PAYLOAD), last_update_time=now - timedelta(days=2)))
    assert rig.app.poll(now, timedelta(hours=1)) == 1
    assert [a.record.alert_id for a in rig.ctx.alerts.list()] == ["a1"]
    assert rig.app.poll(now, timedelta(hours=1)) == 0


def test_a_file_name_that_forges_another_samples_marker_cannot_suppress_its_comment() -> None:
    """File A is named after file B's marker; B's first comment PATCH fails with its outcome
    unknown, so write-back looks at the alert's comments before writing B's again."""
    other = b"MZ the other, malicious file"
    other_sha = hashlib.sha256(other).hexdigest()

    class LosingBsFirstComment(FakeDefender):
        lost = False

        def add_comment(self, alert_id: str, text: str) -> None:
            if not self.lost and text.endswith(marker(f"sha256:{other_sha}")):
                self.lost = True
                raise Transient("connection reset", service="defender", maybe_applied=True)
            super().add_comment(alert_id, text)

    rig = Rig(defender=LosingBsFirstComment())
    rig.defender.add_machine(M1)
    forged = f"joedefender ref sha256:{other_sha}.sh"
    rig.defender.files[(M1, f"C:\\Users\\u\\{forged}")] = PAYLOAD
    rig.defender.files[(M1, "C:\\Users\\u\\b.exe")] = other
    rig.sandbox.verdicts[other_sha] = ("malicious", 97)
    evidence = (
        Evidence(entity_type="File", sha256=SHA, file_name=forged, file_path="C:\\Users\\u"),
        Evidence(entity_type="File", sha256=other_sha, file_name="b.exe", file_path="C:\\Users\\u"),
    )
    rig.receive(Alert(id="a1", detection_source="WindowsDefenderAtp", status="New", machine_id=M1, evidence=evidence))
    rig.drain()

    comments = rig.defender.comments("a1")
    assert len(_ours(comments, f"sha256:{SHA}")) == 1
    (b_comment,) = _ours(comments, f"sha256:{other_sha}")
    assert b_comment.startswith("Joe Sandbox: MALICIOUS (score 97/100)")


def test_a_request_the_sandbox_refuses_as_invalid_ends_the_job_at_once_with_the_reason() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = PAYLOAD
    rig.sandbox.fail("submit_file", Rejected("invalid value for parameter 'systems'", service="joe"), times=50)
    rig.receive(file_alert("a1", M1, PAYLOAD))
    rig.drain()

    assert rig.sandbox.calls["submit_file"] == 1  # not retried
    job = rig.job()
    assert job.state == JobState.FAILED
    assert job.failure is not None
    assert job.failure.text == "refused as invalid, not retried: Joe Sandbox: invalid value for parameter 'systems'"
    (comment,) = _ours(rig.defender.comments("a1"))
    assert "Reason: refused as invalid, not retried: Joe Sandbox: invalid value" in comment


def test_an_exhausted_quota_parks_every_submission_until_it_resets() -> None:
    rig = Rig()
    other = b"MZ another file"
    rig.defender.add_machine(M1)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = PAYLOAD
    rig.defender.files[(M1, "C:\\Users\\u\\y.exe")] = other
    rig.sandbox.fail("submit_file", QuotaExhausted("daily quota used up", service="joe"))
    rig.receive(file_alert("a1", M1, PAYLOAD))
    for _ in range(200):  # until the first submission is refused for the quota
        if not rig.app.run_next("worker"):
            rig.clock.t = max(rig.clock.t, rig.store.next_due() or rig.clock.t)
        if rig.app.quota_exhausted is not None:
            break
    assert rig.app.quota_exhausted is not None
    parked = parked_until(rig.store, rig.clock())
    assert parked is not None
    assert parked - rig.clock() >= 60
    assert ("sample", "parked") in rig.history(f"sha256:{SHA}")

    # A second sample meanwhile is neither collected nor submitted while the park lasts.
    rig.receive(file_alert("a2", M1, other, name="y.exe"))
    while rig.app.run_next("worker"):
        pass
    assert rig.sandbox.calls["submit_file"] == 1
    assert len(rig.defender.actions) == 1
    assert rig.defender.comments("a1") == ()
    assert rig.defender.comments("a2") == ()

    rig.drain()  # the clock moves past the reset: both go
    assert {s.sha256 for s in rig.sandbox.submissions} == {SHA, hashlib.sha256(other).hexdigest()}
    assert len(_ours(rig.defender.comments("a1"))) == 1


def test_every_job_state_has_a_handler_beside_its_transitions() -> None:
    from joedefender.domain.jobs import TRANSITIONS
    from joedefender.pipeline.collection.actions import ActionRunner
    from joedefender.pipeline.collection.registry import STRATEGIES
    from joedefender.pipeline.sample.job import SampleWork

    rig = Rig()
    handlers = SampleWork(rig.ctx, ActionRunner(rig.ctx), STRATEGIES).handlers
    assert set(handlers) == set(TRANSITIONS) == set(JobState)
    # The two collection states are one handler's: starting an attempt, and following it.
    assert handlers[JobState.COLLECT] is handlers[JobState.COLLECTING]


def test_a_poll_records_its_alerts_thirty_to_a_unit_of_work_and_an_overlap_one_by_one() -> None:
    rig = Rig()
    commits: list[int] = []
    unit_of_work = rig.store.unit_of_work

    def counted() -> Any:
        uow = unit_of_work()
        commit = uow.commit

        def committed() -> Any:
            written = commit()
            alerts = sum(1 for kind, _ in written if kind == "alert")
            if alerts:
                commits.append(alerts)
            return written

        uow.commit = committed  # type: ignore[method-assign]
        return uow

    rig.store.unit_of_work = counted  # type: ignore[method-assign]
    now = datetime.fromtimestamp(rig.clock(), UTC)
    for n in range(70):
        rig.defender.add_alert(
            replace(file_alert(f"a{n:02d}", M1, PAYLOAD), last_update_time=now - timedelta(minutes=5))
        )
    assert rig.app.poll(now, timedelta(hours=1)) == 70
    assert commits == [30, 30, 10]  # alerts created per unit of work
    assert {i.key for i in rig.store.items()} == {f"triage:a{n:02d}" for n in range(70)}
    # The next poll overlaps the last one: the known alerts are no-ops, the new one is taken in.
    rig.defender.add_alert(replace(file_alert("a70", M1, PAYLOAD), last_update_time=now))
    commits.clear()
    assert rig.app.poll(now + timedelta(seconds=1), timedelta(hours=1)) == 1
    assert commits == [1]  # the chunk with known alerts, one by one: only the new one is written
    assert rig.ctx.alerts.get("a70") is not None


def test_a_sample_step_names_its_attempts_machine_and_action_for_the_log_lines() -> None:
    """The ids a host puts on log lines: the sample job binds its attempt's own, so that no host
    reads the job for them."""
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = PAYLOAD
    seen: list[dict[str, str]] = []
    get_action = rig.defender.get_action

    def looked_at(action_id: str) -> Any:
        seen.append(dict(dimensions.current()))
        return get_action(action_id)

    rig.defender.get_action = looked_at  # type: ignore[method-assign]
    with dimensions.bound(work_item="sample:x"):
        rig.receive(file_alert("a1", M1, PAYLOAD))
        rig.drain()
    assert rig.job().state == JobState.DONE
    (action_id,) = rig.defender.actions
    assert seen
    assert all(ids == {"work_item": "sample:x", "machine_id": M1, "action_id": action_id} for ids in seen)
    assert dict(dimensions.current()) == {}
