"""Machine health is read once per machine per short window, shared by every job (issue 12, 6)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from joedefender.domain.liveresponse import Machine
from joedefender.pipeline.collection.machines import WINDOW, MachineHealth
from tests.fakes import file_alert
from tests.pipeline.test_steps import M1, M2, Rig


def test_many_jobs_on_the_same_machines_read_their_health_once() -> None:
    rig = Rig()
    for machine in (M1, M2):
        rig.defender.add_machine(machine)
    alerts = []
    for n in range(5):  # five samples, each on both machines: ten candidates in all
        data = f"MZ sample {n}".encode()
        for machine in (M1, M2):
            rig.defender.files[(machine, f"C:\\Users\\u\\s{n}.exe")] = data
            alerts.append(file_alert(f"a{n}{machine[0]}", machine, data, name=f"s{n}.exe"))
    reads: list[tuple[float, str]] = []
    get_machines = rig.defender.get_machines

    def read(machine_ids: Sequence[str]) -> list[Machine]:
        reads.extend((rig.clock.t, m) for m in machine_ids)
        return get_machines(machine_ids)

    rig.defender.get_machines = read  # type: ignore[method-assign]
    rig.receive(*alerts)
    rig.drain()
    assert {j.record.state.value for j in rig.ctx.jobs.list()} == {"done"}
    assert rig.defender.calls["get_machine"] == 0
    # Ten candidates, five jobs: each machine read at most once a window, whichever job asked.
    for machine in (M1, M2):
        times = [t for t, m in reads if m == machine]
        assert times
        assert all(later - earlier >= WINDOW for earlier, later in itertools.pairwise(times))
    assert len(reads) < 10


def test_a_machines_health_is_read_again_once_the_window_has_passed() -> None:
    rig = Rig(scale=0.5)
    rig.defender.add_machine(M1)
    rig.defender.add_machine(M2, online=False)
    health = MachineHealth(rig.ctx)
    assert health.online([M1, M2, "3" * 40]) == {M1: True, M2: False, "3" * 40: False}  # unknown: offline
    rig.clock.t += WINDOW * 0.5 - 1
    rig.defender.add_machine(M2)
    assert health.online([M2]) == {M2: False}  # still the first read
    assert rig.defender.calls["get_machines"] == 1
    rig.clock.t += 2
    assert health.online([M1, M2]) == {M1: True, M2: True}
    assert rig.defender.calls["get_machines"] == 2
