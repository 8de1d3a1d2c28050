"""What only the Azure store does, on Azurite: push-mode `accept`, chained waits beyond the 7-day
maximum, the relay of lost wake-ups and of dead holders' items, poison messages, the queue of each
kind of work, documents larger than a Table property, the transaction's size limit, several
instances on one account, the connection settings, and what each operation costs in storage
requests. The contract it shares with the other stores is in test_store_contract.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from joedefender.adapters.azure import queue as wakeups
from joedefender.adapters.azure import state as entities
from joedefender.adapters.azure.connection import AzureStorageConnection
from joedefender.adapters.azure.queue import MAX_WAKES_PER_MESSAGE
from joedefender.adapters.azure.store import RELAY_GRACE, AzureStore
from joedefender.bootstrap import open_azure_store
from joedefender.pipeline.ports import AlreadyExists, StoreError, StoreUnavailable, UnitOfWork
from joedefender.settings import ConfigurationError
from tests.azurite import KEY, Azurite, unique_prefix
from tests.stores.helpers import FakeClock, run_threads, wait_for
from tests.test_settings import only_problem, settings_with

DAY = 86400.0


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def azure(azurite: Azurite, prefix: str, clock: FakeClock) -> Iterator[AzureStore]:
    connection = AzureStorageConnection(connection_string=azurite.connection_string)
    with AzureStore.from_connection(connection, prefix=prefix, clock=clock) as store:
        yield store


def _queue(azurite: Azurite, name: str) -> QueueClient:
    return QueueClient.from_connection_string(
        azurite.connection_string,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def _visible(azurite: Azurite, name: str) -> list[dict[str, Any]]:
    """The wake-ups visible now, as key and due (received and deleted: as a trigger would)."""
    wakes = [wake for body in _bodies(azurite, name) for wake in body.get("wakes", [body])]
    return [{"key": m["key"], "due": m["due"]} for m in wakes]


def _bodies(azurite: Azurite, name: str) -> list[dict[str, Any]]:
    """The whole bodies of the messages visible now (received and deleted)."""
    queue = _queue(azurite, name)
    found = []
    for message in queue.receive_messages(max_messages=32, visibility_timeout=30):
        found.append(json.loads(message.content))
        queue.delete_message(message)
    return found


def _count(azurite: Azurite, name: str) -> int:
    """Visible and hidden messages alike."""
    return _queue(azurite, name).get_queue_properties().approximate_message_count or 0


# -- push mode: the queue trigger delivers a wake-up ----------------------------------------------


def test_a_unit_of_work_wakes_its_keys_on_the_queue_of_their_kind(azure: AzureStore, azurite: Azurite) -> None:
    names = azure.queue_names()
    assert names == {"liveresponse": f"{azure.prefix}-liveresponse", "work": f"{azure.prefix}-work"}
    work = azure.unit_of_work()
    for key in ["sample:sha256:ab", "cleanup:m1|j1", "triage:a1", "comment:sha256:ab|a1", "odd key"]:
        work.enqueue(key, 500.0)
    work.commit()

    # One message per queue: the wake-ups of a unit of work for the same queue and second travel together.
    (live_response,) = _bodies(azurite, names["liveresponse"])
    assert sorted(m["key"] for m in live_response["wakes"]) == ["cleanup:m1|j1", "sample:sha256:ab"]
    (work_queue,) = _bodies(azurite, names["work"])
    assert sorted(m["key"] for m in work_queue["wakes"]) == ["comment:sha256:ab|a1", "odd key", "triage:a1"]
    assert azure._state.rows(entities.outbox_prefix()) == []  # sent, so dropped


def test_a_message_of_many_wakeups_leases_each_item_in_turn(azure: AzureStore, azurite: Azurite) -> None:
    work = azure.unit_of_work()
    keys = [f"triage:a{n:02d}" for n in range(40)]  # more than one message holds
    for key in keys:
        work.enqueue(key, 500.0)
    work.enqueue("triage:later", 5000.0)  # another second: a message of its own
    work.commit()
    name = azure.queue_names()["work"]
    queue = _queue(azurite, name)
    messages = list(queue.receive_messages(max_messages=32, visibility_timeout=30))
    assert sorted(len(json.loads(m.content).get("wakes", [None])) for m in messages) == [8, MAX_WAKES_PER_MESSAGE]
    leased: list[str] = []
    for message in messages:
        taken = azure.accept_each(message.content, owner="i1", now=lambda: 1000.0, lease_seconds=60)
        first = next(taken)
        # The next item is leased only when asked for: the first runs while the others are free.
        assert {i.key for i in azure.items() if i.owner} == {*leased, first.key}
        leased += [first.key, *(item.key for item in taken)]
    assert sorted(leased) == keys
    assert {i.key for i in azure.items() if i.owner == "i1"} == set(keys)
    assert [i.key for i in azure.items() if not i.owner] == ["triage:later"]


def _wait_visible(azurite: Azurite, name: str) -> list[dict[str, Any]]:
    """The messages once some are visible (a real visibility delay of at most a second)."""
    found: list[dict[str, Any]] = []

    def arrived() -> bool:
        found.extend(_visible(azurite, name))
        return bool(found)

    wait_for(arrived, timeout=10)
    return found


def test_accept_leases_the_item_a_wakeup_names_once(azure: AzureStore, azurite: Azurite, clock: FakeClock) -> None:
    azure.enqueue("triage:a1", 900.0)
    [body] = [json.dumps(m) for m in _visible(azurite, azure.queue_names()["work"])]
    assert json.loads(body) == {"key": "triage:a1", "due": 900.0}  # the entity it carries is left out here

    item = azure.accept(body, owner="instance-1", now=1000.0, lease_seconds=60)
    assert item is not None
    assert (item.key, item.owner, item.attempts, item.lease_until, item.due_at) == (
        "triage:a1",
        "instance-1",
        1,
        1060.0,
        900.0,
    )
    assert item.token

    # Delivered again (the host retried it): the item is leased, so the trigger just returns,
    # and a wake-up for the lease's end exists in case the holder dies; only one, however often.
    clock.now = 1059.5  # so that wake-up is hidden for a second only
    assert azure.accept(body, owner="instance-2", now=1059.5, lease_seconds=60) is None
    assert azure.accept(body, owner="instance-2", now=1059.6, lease_seconds=60) is None
    assert _count(azurite, azure.queue_names()["work"]) == 1
    [lease_end] = _wait_visible(azurite, azure.queue_names()["work"])
    assert lease_end == {"key": "triage:a1", "due": 1060.0}

    taken = azure.accept(json.dumps(lease_end), owner="instance-2", now=1060.0, lease_seconds=60)
    assert taken is not None  # the first holder never finished: its lease ran out
    assert (taken.owner, taken.attempts) == ("instance-2", 2)
    azure.complete(item)  # the lost lease's complete is a no-op
    assert azure.pending() == 1
    azure.complete(taken)
    assert azure.pending() == 0
    assert azure.accept(body, owner="instance-3", now=2000.0, lease_seconds=60) is None  # stale: done


@pytest.mark.parametrize(
    "body", ["", "not json", "[]", '{"key": 5, "due": 1}', '{"key": "k"}', '{"key":"k","due":"x"}']
)
def test_accept_drops_what_is_no_wakeup(azure: AzureStore, body: str) -> None:
    azure.enqueue("k", 0.0)
    assert azure.accept(body, owner="w", now=1000.0, lease_seconds=60) is None
    assert azure.items()[0].owner == ""


def test_a_wait_beyond_seven_days_is_chained(azure: AzureStore, azurite: Azurite, clock: FakeClock) -> None:
    name = azure.queue_names()["work"]
    due = 1000.0 + 10 * DAY
    azure.enqueue("triage:a1", due)
    assert _visible(azurite, name) == []  # hidden for the 7 days a message may hide
    assert _count(azurite, name) == 1

    # Seven days on the host delivers it: not due yet, so it is sent on, hidden for the rest of
    # the wait (by the store's clock: set here to a second before the due time, so the test sees
    # the chained message after a second instead of three days).
    seven_days_on = 1000.0 + 7 * DAY
    body = wakeups.message_body("triage:a1", due)
    clock.now = due - 0.5
    assert azure.accept(body, owner="w", now=seven_days_on, lease_seconds=60) is None
    assert _count(azurite, name) == 2
    assert _visible(azurite, name) == []
    [chained] = _wait_visible(azurite, name)
    assert chained == {"key": "triage:a1", "due": due}
    item = azure.accept(json.dumps(chained), owner="w", now=due, lease_seconds=60)
    assert item is not None
    assert item.key == "triage:a1"


def test_a_stale_wakeup_of_an_item_moved_later_is_dropped(azure: AzureStore, azurite: Azurite) -> None:
    name = azure.queue_names()["work"]
    azure.enqueue("k", 1000.0)
    [first] = _visible(azurite, name)
    item = azure.accept(json.dumps(first), owner="w", now=1000.0, lease_seconds=60)
    assert item is not None
    azure.reschedule(item, 5000.0)  # sends its own wake-up for 5000
    assert _count(azurite, name) == 1
    assert azure.accept(json.dumps(first), owner="w2", now=1001.0, lease_seconds=60) is None
    assert _count(azurite, name) == 1  # nothing sent for the stale one


# -- the outbox and the sweeper ------------------------------------------------------------------


def test_wakeups_a_failed_send_kept_from_the_queue_are_relayed(
    azure: AzureStore, azurite: Azurite, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*_: object) -> None:
        raise StoreUnavailable("the queue service is away")

    with monkeypatch.context() as patched:
        patched.setattr(azure._wakeups, "send_body", unreachable)
        work = azure.unit_of_work()
        work.create("job", "j", {"n": 1})
        work.enqueue("triage:a1", 1000.0 + RELAY_GRACE)
        work.enqueue("sample:sha256:ab", 1000.0 + RELAY_GRACE)
        assert set(work.commit()) == {("job", "j")}  # committed: the sends are the relay's now

    assert azure.get("job", "j") is not None
    names = azure.queue_names()
    assert _count(azurite, names["work"]) + _count(azurite, names["liveresponse"]) == 0
    assert azure.relay_outbox(now=1000.0) == 0  # younger than the grace: its writer may still send it
    clock.now = 1000.0 + RELAY_GRACE
    assert azure.relay_outbox(now=clock.now) == 2
    assert [m["key"] for m in _visible(azurite, names["work"])] == ["triage:a1"]
    assert [m["key"] for m in _visible(azurite, names["liveresponse"])] == ["sample:sha256:ab"]
    assert azure.relay_outbox(now=clock.now) == 0


def test_an_overdue_item_whose_wakeup_was_lost_is_woken_again(
    azure: AzureStore, azurite: Azurite, clock: FakeClock
) -> None:
    name = azure.queue_names()["work"]
    azure.enqueue("k", 900.0)
    assert len(_visible(azurite, name)) == 1  # received and dropped: as lost, or gone to poison

    def sweep(at: float) -> int:
        clock.now = at
        return azure.relay_outbox(now=at)

    assert sweep(900.0 + RELAY_GRACE - 1) == 0  # not overdue long enough yet
    assert sweep(900.0 + RELAY_GRACE) == 1
    assert [m["key"] for m in _visible(azurite, name)] == ["k"]
    assert sweep(900.0 + RELAY_GRACE + 1) == 0  # woken just now: not again yet
    assert sweep(900.0 + 3 * RELAY_GRACE) == 1


def test_poison_messages_are_listed(azure: AzureStore, azurite: Azurite) -> None:
    assert azure.poisoned() == []  # the host has not created the poison queues yet
    name = f"{azure.queue_names()['liveresponse']}-poison"
    poison = _queue(azurite, name)
    poison.create_queue()
    poison.send_message(wakeups.message_body("sample:sha256:ab", 5.0))
    QueueClient.from_connection_string(azurite.connection_string, name).send_message("plain text, not base64!")
    assert azure.poisoned() == [
        (name, '{"key":"sample:sha256:ab","due":5.0}'),
        (name, "plain text, not base64!"),  # not base64: as it is
    ]


# -- entities and transactions -------------------------------------------------------------------


def test_documents_larger_than_a_property_round_trip(azure: AzureStore) -> None:
    large = {"values": [f"value-{i:06d}-" + "x" * 40 for i in range(4000)]}  # ~200 000 characters of JSON
    created = azure.create("push", "big", large)
    assert created is not None
    stored = azure.get("push", "big")
    assert stored == created
    assert stored.data == large

    huge = {"values": ["the same line, over and over " * 4 for _ in range(60_000)]}  # ~7 MB, compressible
    updated = azure.update(stored, huge)
    assert azure.get("push", "big") == updated
    assert azure.list("push")[0].data == huge


def test_a_document_no_entity_can_hold_is_refused_clearly(azure: AzureStore) -> None:
    import random

    noise = random.Random(7)
    unpackable = {"values": ["".join(noise.choices("0123456789abcdef", k=64)) for _ in range(40_000)]}
    with pytest.raises(StoreError, match="more than one Azure Tables entity holds"):
        azure.create("push", "big", unpackable)
    assert azure.get("push", "big") is None


def _a_large_step(store: AzureStore, samples: int) -> UnitOfWork:
    """Triage of an alert with many samples: per sample a job, a link, a history line, a work item."""
    work = store.unit_of_work()
    for i in range(samples):
        work.create("job", f"sha256:{i:03d}", {"n": i})
        work.create("link", f"sha256:{i:03d}|a1", {})
        work.append_history(f"sha256:{i:03d}", "job", "created")
        work.enqueue(f"sample:sha256:{i:03d}", 5000.0)
    return work


def test_a_unit_of_work_beyond_one_transaction_commits_its_documents_at_once(azure: AzureStore) -> None:
    written = _a_large_step(azure, 40).commit()  # 160 entities and an outbox: two transactions' worth
    assert len(written) == 80
    assert len(azure.list("job")) == len(azure.list("link")) == 40
    assert [e.outcome for e in azure.history("sha256:039")] == ["created"]
    assert azure.pending() == 40
    assert azure._state.rows(entities.redo_prefix()) == []  # the rest was applied and dropped

    conflicting = _a_large_step(azure, 45)  # its first 40 jobs exist: nothing of it is applied
    with pytest.raises(AlreadyExists):
        conflicting.commit()
    assert azure.get("job", "sha256:044") is None
    assert len(azure.history("sha256:000")) == 1
    assert azure.pending() == 40


def test_the_rest_of_a_large_unit_of_work_survives_a_crash(
    azure: AzureStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_: object) -> None:
        raise StoreUnavailable("the process died here")

    with monkeypatch.context() as patched:
        patched.setattr(azure, "_replay", crash)
        _a_large_step(azure, 30).commit()
    assert len(azure.list("job")) == 30  # the documents are committed
    assert (azure.pending(), azure.history("sha256:000")) == (0, [])  # their consequences not yet

    clock.now = 1000.0 + RELAY_GRACE
    assert azure.relay_outbox(now=clock.now) == 30
    assert azure.pending() == 30
    assert [e.outcome for e in azure.history("sha256:029")] == ["created"]
    assert azure.relay_outbox(now=clock.now) == 0


def test_a_unit_of_work_of_more_documents_than_one_transaction_is_refused_whole(azure: AzureStore) -> None:
    work = azure.unit_of_work()
    for i in range(101):
        work.create("link", f"l{i}", {})
    with pytest.raises(StoreError, match="102 entities is more than one Azure Tables transaction holds"):
        work.commit()
    assert azure.list("link") == []


# -- several instances on one storage account ----------------------------------------------------


def test_instances_on_one_account_share_the_queue_and_the_session_cap(
    azurite: Azurite, prefix: str, clock: FakeClock
) -> None:
    connection = AzureStorageConnection(connection_string=azurite.connection_string)
    instances = [AzureStore.from_connection(connection, prefix=prefix, clock=clock) for _ in range(3)]
    try:
        for i in range(30):
            instances[0].enqueue(f"triage:a{i:02d}", 0.0)

        def drain(index: int) -> list[str]:
            store, done = instances[index % 3], []
            while (item := store.claim(f"instance-{index}", now=1000.0, lease_seconds=600)) is not None:
                done.append(item.key)
                store.complete(item)
            return done

        taken = [key for keys in run_threads(6, drain) for key in keys]
        assert sorted(taken) == [f"triage:a{i:02d}" for i in range(30)]

        granted = run_threads(9, lambda i: instances[i % 3].acquire(f"m{i}", f"w{i}", 0.0, 60.0, max_active=4))
        assert sum(granted) == 4
        assert all(store.active(now=1.0) == 4 for store in instances)
    finally:
        for store in instances:
            store.close()


# -- connections and settings --------------------------------------------------------------------


def test_the_connection_comes_from_the_hosts_storage_settings() -> None:
    assert AzureStorageConnection.from_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}) == (
        AzureStorageConnection(connection_string="UseDevelopmentStorage=true")
    )
    by_identity = AzureStorageConnection.from_settings(
        {"AzureWebJobsStorage__accountName": "acct", "AzureWebJobsStorage__credential": "managedidentity"}
    )
    assert (by_identity.table_service_uri, by_identity.queue_service_uri, by_identity.credential) == (
        "https://acct.table.core.windows.net",
        "https://acct.queue.core.windows.net",
        "managedidentity",
    )
    explicit = AzureStorageConnection.from_settings(
        {
            "AzureWebJobsStorage__tableServiceUri": "https://t.example",
            "AzureWebJobsStorage__queueServiceUri": "https://q.example",
            "AzureWebJobsStorage__clientId": "1234",
        }
    )
    assert (explicit.table_service_uri, explicit.client_id, explicit.describe()) == (
        "https://t.example",
        "1234",
        "https://t.example (Entra ID)",
    )
    with pytest.raises(ValueError, match="AzureWebJobsStorage__accountName"):
        AzureStorageConnection.from_settings({})
    with pytest.raises(ValueError, match="only 'managedidentity'"):
        AzureStorageConnection.from_settings(
            {"AzureWebJobsStorage__accountName": "acct", "AzureWebJobsStorage__credential": "password"}
        )


def test_the_account_key_shows_nowhere(azure: AzureStore, azurite: Azurite) -> None:
    connection = AzureStorageConnection(connection_string=azurite.connection_string)
    assert KEY not in repr(connection)
    assert KEY not in repr(azure)
    assert connection.describe() == "storage account devstoreaccount1"


def test_bootstrap_opens_the_store_the_settings_name(azurite: Azurite, prefix: str) -> None:
    with open_azure_store({"AzureWebJobsStorage": azurite.connection_string, "StoragePrefix": prefix}) as store:
        assert store.queue_names()["work"] == f"{prefix}-work"
        store.create("job", "j", {})
    with open_azure_store({"AzureWebJobsStorage": azurite.connection_string}, prefix=prefix) as again:
        assert again.get("job", "j") is not None
    with pytest.raises(ConfigurationError, match="AzureWebJobsStorage"):
        open_azure_store({})
    with pytest.raises(ConfigurationError, match="StoragePrefix"):
        open_azure_store({"AzureWebJobsStorage": azurite.connection_string, "StoragePrefix": "Bad_Prefix"})
    assert settings_with().storage_prefix == "joedefender"
    assert settings_with(StoragePrefix="tenant-7").storage_prefix == "tenant-7"
    assert "no storage prefix" in only_problem(StoragePrefix="a--b")
