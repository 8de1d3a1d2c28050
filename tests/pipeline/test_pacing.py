"""Adaptive polls, paced starts, and deadlines that measure the world rather than our own queueing."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from joedefender.domain.liveresponse import Command, LiveResponseAction
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.pacing import PollPlan, StartPace
from joedefender.pipeline.ports import Start
from tests.fakes import FakeDefender, file_alert
from tests.pipeline.test_steps import M1, M2, Clock, Rig


def _noticed(plan: PollPlan, duration: float, running: int = 1) -> tuple[float, int]:
    """When a run of `duration` nominal seconds is seen finished, and how many looks it took."""
    t, looks = 0.0, 0
    while t < duration:
        t += plan.next_look(t, running)
        looks += 1
    return t, looks


@pytest.mark.parametrize("duration", [0.0, 0.3, 1.0, 7.0, 15.0, 60.0, 330.0, 1800.0])
def test_a_run_is_noticed_within_max_2s_or_a_tenth_of_its_time(duration: float) -> None:
    fresh, learnt = PollPlan(), PollPlan()
    learnt.finished(duration)
    for plan in (fresh, learnt):
        seen, _ = _noticed(plan, duration)
        assert seen - duration <= max(2.0, 0.1 * duration) + 1e-9


def test_knowing_the_shortest_recent_run_saves_looks_but_not_the_bound() -> None:
    plan = PollPlan()
    _, first = _noticed(plan, 330.0)
    plan.finished(330.0)
    seen, later = _noticed(plan, 330.0)
    assert later <= first // 3
    assert seen - 330.0 <= 33.0
    seen, _ = _noticed(plan, 400.0)  # a slower one still meets its own bound
    assert seen - 400.0 <= 40.0


def test_many_runs_polled_at_once_keep_within_the_budget() -> None:
    plan = PollPlan(budget_per_minute=80)
    running = 20
    assert plan.next_look(0.0, running) >= 60.0 * running / 80  # 20 polls in 15 s: 80 a minute


def test_starts_get_appointments_inside_the_budget_without_waiting_in_line_together() -> None:
    pace = StartPace(per_minute=10)
    minute = 60.0
    waits = [pace.wait(f"job-{n}", 1000.0, minute) for n in range(25)]
    assert waits[:10] == [0.0] * 10
    assert waits[10:20] == [60.0] * 10
    assert waits[20:] == [120.0] * 5
    assert pace.wait("job-12", 1030.0, minute) == 30.0  # back early: its appointment still stands
    assert pace.wait("job-12", 1060.0, minute) == 0.0  # its turn: it starts
    assert pace.wait("job-99", 1060.0, minute) == 60.0  # a newcomer: the next minute has room


def test_a_start_the_shared_budget_has_no_turn_for_gets_an_appointment_then() -> None:
    """Another instance used the tenant's starts: the job is put off to the shared turn (not
    started into a limiter that would hold its worker), then starts at its appointment."""
    pace = StartPace(per_minute=10)
    asked: list[str] = []

    def elsewhere(turn: float) -> Callable[[], float]:
        def ask() -> float:
            asked.append("asked")
            return turn

        return ask

    assert pace.wait("job-1", 1000.0, 60.0, elsewhere(25.0)) == 25.0
    assert pace.wait("job-1", 1010.0, 60.0, elsewhere(0.0)) == 15.0  # not its time yet: not asked
    assert len(asked) == 1
    assert pace.wait("job-1", 1025.0, 60.0, elsewhere(15.0)) == 15.0  # its time, but no turn yet: later
    assert pace.wait("job-1", 1040.0, 60.0, elsewhere(5.0)) == 0.0  # a turn this near is waited for in the limiter
    assert pace.wait("job-2", 1040.0, 60.0, elsewhere(0.0)) == 0.0
    for n in range(3, 11):
        assert pace.wait(f"job-{n}", 1040.0, 60.0) == 0.0
    asked.clear()
    assert pace.wait("job-11", 1040.0, 60.0, elsewhere(0.0)) == 60.0  # our own ten: not asked
    assert not asked


def test_the_collect_step_does_not_start_before_the_tenants_turn() -> None:
    rig = Rig()
    rig.defender.add_machine(M1)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = b"MZ turn"
    rig.defender.turns[Start.LIVE_RESPONSE] = 30.0
    rig.receive(file_alert("a1", M1, b"MZ turn"))
    for _ in range(50):  # every step due now (intake, triage, the lookup, the collect step)
        if not rig.app.run_next("worker"):
            break
    assert not rig.defender.actions  # put off: no live response, no worker held
    (item,) = [i for i in rig.store.items() if i.key.startswith("sample:")]
    assert item.due_at >= rig.clock() + 29.0
    rig.defender.turns[Start.LIVE_RESPONSE] = 0.0
    rig.drain()
    (job,) = [j.record for j in rig.ctx.jobs.list()]
    assert job.state.value == "done"
    assert len(rig.defender.actions) == 1


class _SlowActions(FakeDefender):
    """Every live response action runs `seconds` on the rig's clock."""

    def __init__(self, clock: Clock, *, seconds: float) -> None:
        super().__init__()
        self._clock, self._seconds = clock, seconds
        self._started: dict[str, float] = {}

    def run_live_response(self, machine_id: str, commands: Sequence[Command], comment: str) -> LiveResponseAction:
        action = super().run_live_response(machine_id, commands, comment)
        self._started[action.id] = self._clock()
        return action

    def get_action(self, action_id: str) -> LiveResponseAction:
        if self._clock() < self._started[action_id] + self._seconds:
            self._action(action_id).polls_left = 2  # this look leaves it running
        return super().get_action(action_id)


def test_waiting_for_our_own_session_cap_does_not_count_against_machine_availability() -> None:
    """One live response session at a time, and the first job's action runs far longer than the
    machine availability limit: the second job waits for our own cap, not for the world, so it
    is not failed as 'no machine online'."""
    config = PipelineConfig(max_live_response_sessions=1, machine_availability_timeout=60, machine_availability_retry=1)
    clock = Clock()
    rig = Rig(config=config, clock=clock, defender=_SlowActions(clock, seconds=300))
    for machine, data in ((M1, b"MZ one"), (M2, b"MZ two")):
        rig.defender.add_machine(machine)
        rig.defender.files[(machine, "C:\\Users\\u\\x.exe")] = data
        rig.receive(file_alert(f"a-{machine[0]}", machine, data))
    rig.drain(max_steps=20_000)
    jobs = [j.record for j in rig.ctx.jobs.list()]
    assert [j.state.value for j in jobs] == ["done", "done"], [j.failure for j in jobs]
    durations = [j.updated_at - j.created_at for j in jobs]
    assert max(durations) > config.machine_wait_limit  # the second one did wait longer than the limit


def test_an_offline_machine_still_fails_the_job_after_the_availability_limit() -> None:
    rig = Rig(config=PipelineConfig(machine_availability_timeout=60, machine_availability_retry=1))
    rig.defender.add_machine(M1, online=False)
    rig.defender.files[(M1, "C:\\Users\\u\\x.exe")] = b"MZ offline"
    rig.receive(file_alert("a1", M1, b"MZ offline"))
    rig.drain()
    (job,) = [j.record for j in rig.ctx.jobs.list()]
    assert job.state.value == "failed"
    assert job.failure is not None
    assert job.failure.reason.value == "machines_unavailable"
