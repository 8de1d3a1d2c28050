"""A collection strategy is a plug-in: one class and one registry line, and the whole pipeline
plans it, runs its action, reads its result into the sample's bytes and submits them."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest

from joedefender.domain.liveresponse import Command
from joedefender.domain.markers import PREFIX
from joedefender.pipeline.collection import registry
from joedefender.pipeline.collection.strategy import CollectionStrategy, Reach, Target
from tests.pipeline.builders import alert, file_evidence, machine, machine_id, world
from tests.world import World, scenario

_PAYLOAD = "payload bytes only the archive still has"
_SHA256 = hashlib.sha256(_PAYLOAD.encode()).hexdigest()
_GONE = "C:\\Users\\bob\\Downloads\\gone.exe"  # deleted since the alert: GetFile finds nothing


class ArchiveCopy(CollectionStrategy):
    """A toy: the machine keeps a base64 copy of every file it ran in C:\\Archive."""

    name: ClassVar[str] = "archive"
    how: ClassVar[str] = "GetFile of the base64 copy in C:\\Archive"
    reach: ClassVar[Reach] = Reach.ON_DISK

    def commands(self, target: Target) -> list[Command]:
        return [Command.get_file(f"C:\\Archive\\{target.job.sha256}.b64")]

    def plain(self, chunks: Iterator[bytes], max_bytes: int) -> Iterator[bytes]:
        yield base64.b64decode(b"".join(chunks))


def _world(make_world: Callable[..., World]) -> tuple[World, str]:
    a = alert(1, 1, file_evidence("payload", _GONE))
    archived = {f"C:\\Archive\\{_SHA256}.b64": "archived"}
    raw = world(
        samples={"payload": _PAYLOAD, "archived": base64.b64encode(_PAYLOAD.encode()).decode()},
        machines=[machine(1, files=archived)],
        alerts=[a],
        verdicts=[{"sample": "payload", "detection": "malicious", "score": 77}],
    )
    return make_world(scenario(raw)), a["id"]


def test_a_strategy_added_to_the_registry_collects_the_file_end_to_end(
    make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "STRATEGIES", (*registry.STRATEGIES, ArchiveCopy()))
    w, alert_id = _world(make_world)
    w.process(alert_id)

    (submission,) = w.submissions()
    assert submission["sha256"] == _SHA256  # the decoded bytes, not the base64 copy
    (comment,) = [c for c in w.comments(alert_id) if PREFIX in c]
    assert comment.startswith("Joe Sandbox: MALICIOUS (score 77/100)")
    actions = w.live_responses(machine_id(1))
    assert len(actions) == 2  # GetFile on the evidence path first (failed), then the archive's
    with w.connector() as connector:
        history = [(h.outcome, h.detail) for h in connector.store.history(f"sha256:{_SHA256}")]
    assert ("attempt failed", "getfile") in [(o, d.split(" on ")[0]) for o, d in history]
    collected = [d for o, d in history if o == "collected"]
    assert collected == [
        f"{len(_PAYLOAD)} bytes from {machine_id(1)} by archive: GetFile of the base64 copy in C:\\Archive"
    ]


def test_without_the_registry_line_the_file_is_not_collected(make_world: Callable[..., World]) -> None:
    w, alert_id = _world(make_world)
    w.process(alert_id)

    assert w.submissions() == []
    (comment,) = [c for c in w.comments(alert_id) if PREFIX in c]
    assert comment.startswith("Joe Sandbox: not analysed")
    assert "could not collect the file: getfile on" in comment
