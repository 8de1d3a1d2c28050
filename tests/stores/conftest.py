"""The store adapters the contract suite runs against, each opened fresh for every test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from joedefender.adapters.memory import MemoryStore
from joedefender.adapters.sqlite import SqliteStore
from joedefender.pipeline.ports import Store
from tests.stores.helpers import FakeClock

# Every adapter of the `Store` port, by the name its tests carry: each test of
# test_store_contract.py runs once per entry. An adapter joins the contract suite by adding one
# entry here, a factory given a fresh folder and the clock to use (an Azure Tables/Queues
# adapter, say, on Azurite, with a table and queue prefix of its own per test).
STORE_FACTORIES: dict[str, Callable[[Path, Callable[[], float]], Store]] = {
    "sqlite": lambda folder, clock: SqliteStore(folder / "joedefender.db", clock=clock),
    "memory": lambda folder, clock: MemoryStore(clock=clock),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=list(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    opened = STORE_FACTORIES[request.param](tmp_path, clock)
    try:
        yield opened
    finally:
        opened.close()
