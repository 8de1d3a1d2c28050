"""The store's changes to how the Azure SDK writes a transaction (`adapters/azure/_sdk.py`): the
multipart body written directly is, byte for byte, what azure-core's `email`-based helper
writes, for transactions of every kind of operation and of every size; and a transaction sent
to Azurite builds no `email` message."""

from __future__ import annotations

import email.message
import random
import re
import uuid
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.rest import HttpRequest
from azure.core.utils import _pipeline_transport_rest_shared as shared
from azure.data.tables import TableClient, UpdateMode
from azure.data.tables._policies import StorageHeadersPolicy
from azure.data.tables._table_batch import TableBatchOperations

from joedefender.adapters.azure import _sdk
from joedefender.adapters.azure.store import AzureStore
from tests.stores.test_azure_costs import azure, prefix

__all__ = ["azure", "prefix"]

_ACCOUNT = "devstoreaccount1"
_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_CONNECTION = (
    f"DefaultEndpointsProtocol=http;AccountName={_ACCOUNT};AccountKey={_KEY};"
    f"TableEndpoint=http://127.0.0.1:1/{_ACCOUNT};"
)
_DATES = re.compile(rb"(x-ms-date|Date): [^\r]*")  # the parts are signed at different seconds


def _batch(client: TableClient, operations: list[tuple[Any, ...]]) -> HttpRequest:
    """The batch request `TableClient.submit_transaction` sends, its parts' policies applied."""
    parts = TableBatchOperations(
        config=client._client._config, endpoint=f"{client.scheme}://{client._primary_hostname}", table_name="t"
    )
    for operation in operations:
        parts.add_operation(operation)
    policies = [StorageHeadersPolicy()]
    changeset = HttpRequest("POST", "")
    changeset.set_multipart_mixed(*parts.requests, policies=policies, boundary=f"changeset_{uuid.uuid4()}")
    batch = HttpRequest("POST", "http://127.0.0.1:1/$batch", headers={"Content-Type": "application/json"})
    batch.set_multipart_mixed(changeset, policies=policies, enforce_https=False, boundary=f"batch_{uuid.uuid4()}")
    _sdk._prepare_parts(batch)
    return batch


def _operations(rng: random.Random, count: int) -> list[tuple[Any, ...]]:
    hostile = "\r\n--batch_x\r\nContent-Type: text/plain\r\n\r\n é \u2028 \u202e"  # inside JSON: escaped
    found: list[tuple[Any, ...]] = []
    for n in range(count):
        entity = {
            "PartitionKey": "state",
            "RowKey": f"doc|job|{n}|{rng.random()}",
            "t0": "x" * rng.randint(0, 32_000),
            "detail": hostile,
            "version": rng.randint(0, 9),
            "at": rng.random(),
            "z0": bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 40))),
        }
        checked = {
            "etag": "W/\"datetime'2026-01-01T00%3A00%3A00.1Z'\"",
            "match_condition": MatchConditions.IfNotModified,
        }
        kind = rng.choice(["create", "update", "delete", "upsert"])
        if kind == "update":
            found.append((kind, entity, {"mode": UpdateMode.REPLACE, **checked}))
        elif kind == "delete":
            found.append((kind, {"PartitionKey": "state", "RowKey": entity["RowKey"]}, checked))
        else:
            found.append((kind, entity))
    return found


@pytest.mark.parametrize("seed", range(20))
def test_the_body_written_directly_is_the_email_packages_byte_for_byte(seed: int) -> None:
    rng = random.Random(seed)
    client = TableClient.from_connection_string(_CONNECTION, "t")
    operations = _operations(rng, rng.choice([1, 2, 5, rng.randint(1, 100)]))
    ours, theirs = _batch(client, operations), _batch(client, operations)
    # Same boundaries for both.
    theirs.multipart_mixed_info = (
        theirs.multipart_mixed_info[0],
        theirs.multipart_mixed_info[1],
        ours.multipart_mixed_info[2],
        *theirs.multipart_mixed_info[3:],
    )
    changeset_ours, changeset_theirs = ours.multipart_mixed_info[0][0], theirs.multipart_mixed_info[0][0]
    changeset_theirs.multipart_mixed_info = (
        *changeset_theirs.multipart_mixed_info[:2],
        changeset_ours.multipart_mixed_info[2],
        *changeset_theirs.multipart_mixed_info[3:],
    )
    assert _sdk._multipart_body(ours) == shared._prepare_multipart_body_helper(theirs) == len(operations)
    assert _DATES.sub(b"", ours.content) == _DATES.sub(b"", theirs.content)
    assert ours.headers["Content-Type"] == theirs.headers["Content-Type"]


def test_a_transaction_builds_no_email_message(azure: AzureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_: object, **__: object) -> bytes:
        raise AssertionError("a transaction's body went through the email package")

    monkeypatch.setattr(email.message.Message, "as_bytes", refused)
    work = azure.unit_of_work()
    for n in range(3):
        work.create("link", f"sha256:ab|a{n}", {"n": n})
        work.append_history(f"alert:a{n}", "triage", "accepted")
    assert len(work.commit()) == 3
    assert [azure.get("link", f"sha256:ab|a{n}").data for n in range(3)] == [{"n": n} for n in range(3)]  # type: ignore[union-attr]
