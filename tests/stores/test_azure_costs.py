"""What the Azure store costs in storage requests, counted as Azurite answers them
(`bench.storage_requests`), and in CPU; and how it wakes what a dead instance held.

A delivered wake-up carries the index entity as its sender wrote it, so leasing the item is one
conditional write; a step that learnt nothing is rescheduled with one write and one wake-up; a
unit of work that lost its race on one work key reads that key only. An item whose holder died
is woken by the relay a short grace after its lease ran out, not after the host's 10 minutes.
A transaction starts no thread, and no request looks up the environment's proxies again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy
from bench.storage_requests import counting

from joedefender.adapters.azure.connection import AzureStorageConnection, http_options
from joedefender.adapters.azure.store import AzureStore
from tests.azurite import Azurite, unique_prefix
from tests.stores.helpers import FakeClock


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


def _open(azurite: Azurite, prefix: str, clock: FakeClock) -> AzureStore:
    connection = AzureStorageConnection(connection_string=azurite.connection_string)
    return AzureStore.from_connection(connection, prefix=prefix, clock=clock)


@pytest.fixture
def azure(azurite: Azurite, prefix: str, clock: FakeClock) -> Iterator[AzureStore]:
    with _open(azurite, prefix, clock) as store:
        yield store


def _delivered(azurite: Azurite, name: str) -> list[str]:
    """The bodies of the messages visible now, received and deleted as the host would."""
    queue = QueueClient.from_connection_string(
        azurite.connection_string,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    bodies = []
    for message in queue.receive_messages(max_messages=32, visibility_timeout=30):
        bodies.append(str(message.content))
        queue.delete_message(message)
    return bodies


def _work(azure: AzureStore, azurite: Azurite) -> list[str]:
    return _delivered(azurite, azure.queue_names()["work"])


def test_a_delivered_wakeup_leases_its_item_with_one_write(azure: AzureStore, azurite: Azurite) -> None:
    azure.enqueue("triage:a1", 900.0)
    [body] = _work(azure, azurite)
    assert json.loads(body)["state"]["key"] == "triage:a1"  # the entity as written, and its ETag
    with counting() as requests:
        item = azure.accept(body, owner="i1", now=1000.0, lease_seconds=60)
    assert item is not None
    assert (item.owner, item.attempts, item.due_at) == ("i1", 1, 900.0)
    assert requests.snapshot() == {"tables.update:state": 1}  # no read first
    assert azure.accept(body, owner="i2", now=1001.0, lease_seconds=60) is None  # the same message again: leased


def test_a_wakeup_whose_item_changed_since_reads_it_and_leases_it_once(
    azure: AzureStore, azurite: Azurite, azurite_store: Any
) -> None:
    azure.enqueue("triage:a1", 900.0)
    [stale] = _work(azure, azurite)
    azurite_store.enqueue("triage:a1", 800.0)  # another instance moved it earlier: a new ETag
    [fresh] = _work(azure, azurite)
    with counting() as requests:
        item = azure.accept(stale, owner="i1", now=1000.0, lease_seconds=60)
    assert item is not None
    assert (item.due_at, item.generation) == (800.0, 2)
    assert requests.snapshot() == {"tables.update:state": 2, "tables.get:state": 1}  # refused, read, leased
    assert azure.accept(fresh, owner="i2", now=1000.0, lease_seconds=60) is None


@pytest.mark.parametrize(
    "state",
    [
        {"key": "triage:other", "due": 1.0, "attempts": 0, "owner": "", "lease": 0.0, "generation": 1},
        {"key": "triage:a1", "due": "never"},
        "not an entity",
    ],
)
def test_an_entity_a_message_makes_up_is_not_believed(azure: AzureStore, azurite: Azurite, state: Any) -> None:
    azure.enqueue("triage:a1", 900.0)
    [body] = _work(azure, azurite)
    forged = json.loads(body) | {"state": state}
    with counting() as requests:
        item = azure.accept(json.dumps(forged), owner="i1", now=1000.0, lease_seconds=60)
    assert item is not None  # the stored entity decided, as read
    assert requests.snapshot() == {"tables.get:state": 1, "tables.update:state": 1}


def test_a_step_that_learnt_nothing_costs_one_write_and_one_wakeup(azure: AzureStore, azurite: Azurite) -> None:
    azure.enqueue("sample:sha256:ab", 900.0)
    [body] = _delivered(azurite, azure.queue_names()["liveresponse"])
    item = azure.accept(body, owner="i1", now=1000.0, lease_seconds=60)
    assert item is not None
    with counting() as requests:
        azure.reschedule(item, 1030.0)  # a poll: the action still runs
    assert requests.snapshot() == {"tables.update:state": 1, "queues.send": 1}
    assert [i.due_at for i in azure.items()] == [1030.0]


def test_a_finished_step_costs_one_delete(azure: AzureStore, azurite: Azurite) -> None:
    azure.enqueue("triage:a1", 900.0)
    [body] = _work(azure, azurite)
    item = azure.accept(body, owner="i1", now=1000.0, lease_seconds=60)
    assert item is not None
    with counting() as requests:
        azure.complete(item)
    assert requests.snapshot() == {"tables.delete:state": 1}
    assert azure.pending() == 0


def test_a_unit_of_work_that_lost_its_race_on_one_key_reads_that_key_only(
    azure: AzureStore, azurite: Azurite, azurite_store: Any
) -> None:
    azurite_store.enqueue("sample:sha256:ab", 5000.0)  # another instance made it: this one has not seen it
    work = azure.unit_of_work()
    work.create("link", "sha256:ab|a1", {})
    work.enqueue("sample:sha256:ab", 1000.0)  # taken as new: refused, as it exists
    work.enqueue("comment:sha256:ab|a1", 1000.0)  # new indeed
    with counting() as requests:
        work.commit()
    assert requests.snapshot() == {"tables.batch": 2, "tables.get:state": 1, "queues.send": 2}
    assert {(i.key, i.due_at, i.generation) for i in azure.items()} == {
        ("comment:sha256:ab|a1", 1000.0, 1),
        ("sample:sha256:ab", 1000.0, 2),
    }


def test_the_relay_wakes_an_item_whose_holder_died_a_short_grace_after_its_lease_ended(
    azure: AzureStore, azurite: Azurite, clock: FakeClock
) -> None:
    azure.enqueue("triage:a1", 900.0)
    [body] = _work(azure, azurite)
    assert azure.accept(body, owner="dead", now=1000.0, lease_seconds=60) is not None  # then it died
    clock.now = 1059.0
    assert azure.relay_outbox(now=1059.0, grace=600.0, lease_grace=10.0) == 0  # its lease still runs
    assert azure.relay_outbox(now=1069.0, grace=600.0, lease_grace=10.0) == 0  # ended, within the grace
    clock.now = 1070.0
    assert azure.relay_outbox(now=1070.0, grace=600.0, lease_grace=10.0) == 1
    [woken] = _work(azure, azurite)
    taken = azure.accept(woken, owner="alive", now=1070.5, lease_seconds=60)
    assert taken is not None
    assert (taken.owner, taken.attempts) == ("alive", 2)
    assert azure.relay_outbox(now=1071.0, grace=600.0, lease_grace=10.0) == 0  # its new holder has it


def test_the_relay_wakes_a_dead_holders_item_once(azure: AzureStore, azurite: Azurite, clock: FakeClock) -> None:
    azure.enqueue("triage:a1", 900.0)
    [body] = _work(azure, azurite)
    assert azure.accept(body, owner="dead", now=1000.0, lease_seconds=60) is not None
    clock.now = 1100.0
    assert azure.relay_outbox(now=1100.0, grace=600.0, lease_grace=10.0) == 1
    assert azure.relay_outbox(now=1130.0, grace=600.0, lease_grace=10.0) == 0  # woken; its message is on its way
    assert len(_work(azure, azurite)) == 1


@pytest.fixture
def azurite_store(azurite: Azurite, prefix: str, clock: FakeClock) -> Iterator[AzureStore]:
    """Another instance on the same table and queues."""
    with _open(azurite, prefix, clock) as store:
        yield store


def test_a_transaction_starts_no_thread(azure: AzureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    start = threading.Thread.start

    def noted(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", noted)
    work = azure.unit_of_work()
    for n in range(5):
        work.create("link", f"sha256:ab|a{n}", {})
        work.append_history(f"alert:a{n}", "triage", "accepted")
    assert len(work.commit()) == 5
    assert started == []  # azure-core would start a thread pool, nested, for every transaction


def test_no_request_looks_up_the_environments_proxies(azure: AzureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    looked: list[str] = []
    lookup = requests.sessions.get_environ_proxies

    def noted(url: str, no_proxy: str | None = None) -> dict[str, str]:
        looked.append(url)
        return lookup(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", noted)
    azure.enqueue("triage:a1", 900.0)
    azure.create("alert", "a1", {})
    assert azure.get("alert", "a1") is not None
    assert looked == []  # taken once, when the store was opened


def test_the_environments_proxy_is_taken_unless_no_proxy_exempts_the_account(
    azurite: Azurite, prefix: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert http_options("https://acct.table.core.windows.net")["proxies"]["https"] == "http://proxy.invalid:3128"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,.internal.example")
    assert "proxies" not in http_options("https://acct.internal.example")
    with _open(azurite, prefix, clock) as store:  # Azurite on 127.0.0.1: not through the proxy
        store.create("job", "j", {})
        assert store.get("job", "j") is not None
