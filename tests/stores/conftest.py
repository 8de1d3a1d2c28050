"""The store adapters the contract suite runs against, each opened fresh for every test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from joedefender.adapters.azure.connection import AzureStorageConnection
from joedefender.adapters.azure.store import AzureStore
from joedefender.adapters.memory import MemoryStore
from joedefender.adapters.sqlite import SqliteStore
from joedefender.pipeline.ports import Store
from tests.azurite import Azurite, azurite, unique_prefix
from tests.stores.helpers import FakeClock

__all__ = ["azurite"]  # the session's emulator, for the Azure store

# Every adapter of the `Store` port, by the name its tests carry: each test of
# test_store_contract.py runs once per entry. An adapter joins the contract suite by adding one
# entry here, a factory given a fresh folder and the clock to use. The Azure store, which needs
# the session's Azurite, is the one more entry of `store` (a table and queues of its own per test).
STORE_FACTORIES: dict[str, Callable[[Path, Callable[[], float]], Store]] = {
    "sqlite": lambda folder, clock: SqliteStore(folder / "joedefender.db", clock=clock),
    "memory": lambda folder, clock: MemoryStore(clock=clock),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def open_azure_store(emulator: Azurite, clock: Callable[[], float]) -> AzureStore:
    connection = AzureStorageConnection(connection_string=emulator.connection_string)
    return AzureStore.from_connection(connection, prefix=unique_prefix(), clock=clock)


@pytest.fixture(params=[*STORE_FACTORIES, "azure"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    if request.param == "azure":
        opened: Store = open_azure_store(request.getfixturevalue("azurite"), clock)
    else:
        opened = STORE_FACTORIES[request.param](tmp_path, clock)
    try:
        yield opened
    finally:
        opened.close()
