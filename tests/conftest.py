from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from joedefender_emulators.scenario import Scenario
from tests.world import World


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    worlds: list[World] = []

    def make(scenario: Scenario, **settings: str) -> World:
        folder = tmp_path / f"world-{len(worlds)}"
        folder.mkdir()
        world = World(scenario, folder, **settings)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.close()
