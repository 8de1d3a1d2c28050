"""Alerts that join a sample after its comment went out are commented together, in the next
batchUpdate of that sample, not by one PATCH each (issue 22, point 2): on SQLite and on the
Azure store, whichever of two instances triages them.

Counted by the MDE emulator over real sockets (`/_emulator/calls`). The connectors' clock runs
with real time plus an offset the test moves, so the late alerts come five nominal seconds apart
and the wait for the batch is passed by moving the clock, not by sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from joedefender.adapters.azure.connection import AzureStorageConnection
from joedefender.adapters.azure.store import AzureStore
from joedefender.bootstrap import Connector, open_connector
from joedefender.domain.comments import MARKER_PREFIX
from joedefender.pipeline.clock import Clock
from joedefender.pipeline.ports import Store
from joedefender.pipeline.verdicts.writeback import LATE_JOINERS_WAIT
from tests.azurite import azurite, unique_prefix
from tests.pipeline.builders import alert, file_evidence, machine, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]
__all__ = ["azurite"]  # the session's Azurite, for the Azure store's case

_PATH = "C:\\Users\\u\\Downloads\\invoice.exe"
_EARLY, _LATE = 2, 6


class _Offset:
    """Real time, plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _world(make_world: WorldFactory) -> tuple[World, list[str]]:
    """One file Joe knows (its job ends at the lookup), carried by eight alerts on four machines."""
    alerts = [alert(n, 1 + n % 4, file_evidence("known", _PATH)) for n in range(1, _EARLY + _LATE + 1)]
    raw = world(
        samples={"known": "a known file"},
        machines=[machine(m, files={_PATH: "known"}) for m in range(1, 5)],
        alerts=alerts,
        analyses=[{"sample": "known", "detection": "malicious", "score": 90, "age_days": 1}],
        time_scale=0.05,
    )
    return make_world(scenario(raw), JoeSandboxResubmitAfterDays="7"), [a["id"] for a in alerts]


def _stores(kind: str, w: World, request: pytest.FixtureRequest, clock: _Offset) -> Iterator[Store | None]:
    """Two instances' stores over the same state: the SQLite file (None: the connector opens its
    own), or two Azure stores on one table."""
    if kind == "sqlite":
        yield from (None, None)
        return
    emulator = request.getfixturevalue(azurite.__name__)
    prefix = unique_prefix()
    for _ in range(2):
        yield AzureStore.from_connection(
            AzureStorageConnection(connection_string=emulator.connection_string), prefix=prefix, clock=clock
        )


def _run_due(connector: Connector) -> None:
    """Run every step that is due now (nothing waits for what is due later)."""
    while connector.app.run_next("test"):
        pass


def _ours(w: World, alert_id: str) -> list[str]:
    return [c for c in w.comments(alert_id) if MARKER_PREFIX in c]


@pytest.mark.parametrize("kind", ["sqlite", "azure"])
def test_alerts_joining_after_the_comment_wait_for_each_other_and_get_one_batch(
    make_world: WorldFactory, request: pytest.FixtureRequest, kind: str
) -> None:
    w, ids = _world(make_world)
    early, late = ids[:_EARLY], ids[_EARLY:]
    clock = _Offset()
    connector_clock = Clock(scale=w.scenario.time_scale, source=clock)
    with ExitStack() as stack:
        stores = list(_stores(kind, w, request, clock))
        for store in stores:
            if store is not None:
                stack.callback(store.close)
        instances = [stack.enter_context(open_connector(w.settings, clock=connector_clock, store=s)) for s in stores]
        for alert_id in early:
            instances[0].app.receive(alert_id, source="test")
        _run_due(instances[0])
        assert [len(_ours(w, i)) for i in early] == [1] * _EARLY
        assert (w.calls("alerts.batchUpdate"), w.calls("alerts.update")) == (1, 0)

        for n, alert_id in enumerate(late):  # one every five nominal seconds, to either instance
            instance = instances[n % 2]
            instance.app.receive(alert_id, source="test")
            _run_due(instance)
            clock.offset += connector_clock.real(5)
        _run_due(instances[0])
        _run_due(instances[1])
        assert [len(_ours(w, i)) for i in late] == [0] * _LATE  # waiting for the last of them
        assert (w.calls("alerts.batchUpdate"), w.calls("alerts.update")) == (1, 0)

        clock.offset += connector_clock.real(LATE_JOINERS_WAIT)
        _run_due(instances[1])
        _run_due(instances[0])
        lines = [h.detail for h in instances[0].store.history(f"alert:{late[0]}") if h.step == "write-back"]
    assert [len(_ours(w, i)) for i in ids] == [1] * len(ids)
    assert (w.calls("alerts.batchUpdate"), w.calls("alerts.update")) == (2, 0)  # the late ones: one batch
    assert len(lines) == 1
    assert lines[0].endswith(f", one of {_LATE} in a batch")


def test_a_source_that_writes_comments_one_by_one_does_not_hold_late_alerts(make_world: WorldFactory) -> None:
    w, ids = _world(make_world)
    with w.connector() as connector:
        connector.ctx.defender.batches_comments = False  # as Graph, which has no batch call
        for alert_id in ids[:_EARLY]:
            connector.app.receive(alert_id, source="test")
        _run_due(connector)
        connector.app.receive(ids[_EARLY], source="test")
        _run_due(connector)  # the late alert's comment is due at once
    assert [len(_ours(w, i)) for i in ids[: _EARLY + 1]] == [1] * (_EARLY + 1)
    assert (w.calls("alerts.batchUpdate"), w.calls("alerts.update")) == (1, 1)
