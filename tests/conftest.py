from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from joedefender.domain.jobs import TRANSITIONS, observe_transitions

if TYPE_CHECKING:  # the world needs the whole connector; tests that use no world do not import it
    from joedefender_emulators.scenario import Scenario
    from tests.world import World


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    worlds: list[World] = []

    from tests.world import World

    def make(scenario: Scenario, **settings: str) -> World:
        folder = tmp_path / f"world-{len(worlds)}"
        folder.mkdir()
        world = World(scenario, folder, **settings)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.close()


# --- every row of the sample job's state table is exercised by the suite -------------------------
# Transitions are collected from every test run in this process; when the whole suite ran and
# passed, a row that no test took fails the session (a row nothing exercises is untested code).

_TRANSITIONS_TAKEN = observe_transitions()


_TAKEN_BY_WORKERS: set[tuple[str, str]] = set()  # under pytest-xdist: what each worker took


@pytest.hookimpl(optionalhook=True)  # an xdist hook: `-p no:xdist` runs without it
def pytest_testnodedown(node: Any, error: object) -> None:
    """The xdist controller gathers the transitions each worker took (see below)."""
    _TAKEN_BY_WORKERS.update((a, b) for a, b in node.workeroutput.get("transitions", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its share goes to the controller
        workeroutput["transitions"] = sorted((a.value, b.value) for a, b in _TRANSITIONS_TAKEN)
        return
    taken = {(a.value, b.value) for a, b in _TRANSITIONS_TAKEN} | _TAKEN_BY_WORKERS
    whole_suite = not session.config.option.keyword and not session.config.option.markexpr
    args = [a for a in session.config.args if not a.startswith("-")]
    whole_suite = whole_suite and all(Path(a).resolve() == Path(__file__).parent.resolve() for a in args)
    if not whole_suite or exitstatus != 0 or not taken:
        return
    missing = sorted(
        f"{a.value} -> {b.value}"
        for a, targets in TRANSITIONS.items()
        for b in targets
        if (a.value, b.value) not in taken
    )
    if missing:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"sample job transitions no test exercised: {', '.join(missing)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
