"""The sample job's state machine: only the table's transitions are possible.

That every row is taken by real steps is checked over the whole suite (tests/conftest.py), so no
test here takes a legal transition by hand.
"""

from __future__ import annotations

import pytest

from joedefender.domain.jobs import TRANSITIONS, IllegalTransition, JobState, SampleJob


def _job(state: JobState) -> SampleJob:
    return SampleJob(key="sha256:" + "a" * 64, kind="file", sha256="a" * 64, state=state, created_at=0, updated_at=0)


@pytest.mark.parametrize(
    ("source", "target"),
    [(a, b) for a in JobState for b in JobState if a != b and b not in TRANSITIONS[a]],
)
def test_a_transition_outside_the_table_is_refused(source: JobState, target: JobState) -> None:
    job = _job(source)
    with pytest.raises(IllegalTransition, match=f"{source.value} -> {target.value}"):
        job.move_to(target)
    assert job.state == source


def test_the_table_covers_every_state_and_final_states_lead_nowhere_but_a_reopen() -> None:
    assert set(TRANSITIONS) == set(JobState)
    assert TRANSITIONS[JobState.DONE] == frozenset()
    assert TRANSITIONS[JobState.RESOLVED] == frozenset()
    assert TRANSITIONS[JobState.FAILED] == {JobState.COLLECT}
