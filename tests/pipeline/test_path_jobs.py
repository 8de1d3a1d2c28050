"""Path jobs on in-memory ports: a file a command line named, collected by its path, hashed, and
handed to the job of its hash; what happens when that hand-over fails, crashes half-way, or an
alert names the file again afterwards."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from joedefender.domain.comments import marker
from joedefender.domain.errors import Transient
from joedefender.domain.jobs import JobState, LinkState, SampleJob
from joedefender.domain.keys import link_prefix
from joedefender.domain.retry import RetryPolicy
from joedefender.domain.samples import SampleKey
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.sample.resolve import Resolve
from tests.fakes import process_alert
from tests.pipeline.test_steps import M1, M2, Rig

DLL = "C:\\ProgramData\\x.dll"
PAYLOAD = b"MZ the DLL"
SHA = hashlib.sha256(PAYLOAD).hexdigest()
FILE_KEY = f"sha256:{SHA}"
PATH_KEY = SampleKey.for_path(M1, DLL).id


def _rig(**config: object) -> Rig:
    rig = Rig(config=PipelineConfig(**config))  # type: ignore[arg-type]
    for machine in (M1, M2):
        rig.defender.add_machine(machine)
    rig.defender.files[(M1, DLL)] = PAYLOAD
    rig.sandbox.verdicts[SHA] = ("malicious", 90)
    return rig


def _ours(rig: Rig, alert_id: str, key: str) -> list[str]:
    return [c for c in rig.defender.comments(alert_id) if c.endswith(marker(key))]


def test_a_hand_over_that_keeps_failing_fails_the_path_job_and_says_so_on_its_alert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = _rig(step_retry=RetryPolicy(max_retries=2, first=1.0, cap=1.0, jitter="none"))

    def failing(*_: object) -> None:
        raise Transient("the store is unavailable", service="store")

    monkeypatch.setattr(Resolve, "_hand_over", failing)
    rig.receive(process_alert("a1", M1, f"rundll32.exe {DLL},Go"))
    rig.drain()

    job = rig.job(PATH_KEY)
    assert (job.state, job.sha256) == (JobState.FAILED, SHA)
    [comment] = _ours(rig, "a1", PATH_KEY)
    assert comment.startswith("Joe Sandbox: not analysed\nReason: gave up after 2 failed tries")
    assert f"\nRun by rundll32.exe: {DLL}\n" in comment
    assert rig.ctx.jobs.get(FILE_KEY) is None
    assert rig.sandbox.submissions == []


def test_a_hand_over_that_dies_half_way_is_finished_by_the_next_step_without_doing_anything_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = _rig()
    real = Resolve._hand_over
    calls: list[str] = []

    def dies_on_the_second(self: Resolve, job: SampleJob, *args: object) -> None:
        calls.append(job.key)
        if len(calls) == 2:
            raise Transient("the process died here", service="store")
        real(self, job, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Resolve, "_hand_over", dies_on_the_second)
    rig.receive(
        process_alert("a1", M1, f"rundll32.exe {DLL},Go"),
        process_alert("a2", M1, f"regsvr32.exe /s {DLL}", image="regsvr32.exe"),
    )
    rig.drain()

    assert len(calls) == 3  # the first alert handed over once, the second after the retry
    assert rig.job(PATH_KEY).state == JobState.RESOLVED
    assert rig.job(FILE_KEY).state == JobState.DONE
    assert [s.sha256 for s in rig.sandbox.submissions] == [SHA]
    assert len(rig.defender.actions) == 1  # one GetFile: the hash's job submitted what it fetched
    for alert_id in ("a1", "a2"):
        assert len(_ours(rig, alert_id, FILE_KEY)) == 1
        assert _ours(rig, alert_id, PATH_KEY) == []
    assert {link.record.state for link in rig.ctx.links.list(prefix=link_prefix(PATH_KEY))} == {LinkState.MOVED}


def test_an_alert_naming_a_file_already_resolved_goes_straight_to_the_job_of_its_hash() -> None:
    rig = _rig()
    rig.receive(process_alert("a1", M1, f"rundll32.exe {DLL},Go"))
    rig.drain()
    rig.receive(process_alert("a2", M1, f"rundll32.exe {DLL.upper()},Other"))
    rig.drain()

    assert len(rig.defender.actions) == 1  # not fetched again
    [comment] = _ours(rig, "a2", FILE_KEY)
    assert f"\nRun by rundll32.exe: {DLL.upper()}\n" in comment
    assert rig.ctx.links.get(f"{PATH_KEY}|a2") is None
    record = rig.ctx.alerts.get("a2")
    assert record is not None
    assert record.record.samples == [FILE_KEY]


def test_a_path_job_is_collected_only_by_a_strategy_that_fetches_what_is_at_its_path() -> None:
    # An AV alert: the quarantine strategies apply to it, but find their file by its hash.
    rig = _rig()
    del rig.defender.files[(M1, DLL)]
    rig.defender.quarantine[M1] = {SHA: PAYLOAD}
    rig.receive(replace(process_alert("a1", M1, f"rundll32.exe {DLL},Go"), detection_source="WindowsDefenderAv"))
    rig.drain()

    job = rig.job(PATH_KEY)
    assert job.state == JobState.FAILED
    assert [a.strategy for a in job.attempts] == ["getfile"]
