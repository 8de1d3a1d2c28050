from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the world needs the whole connector; tests that use no world do not import it
    from joedefender.emulators.scenario import Scenario
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
