"""What an outbreak costs in Defender calls: alerts read in bulk, comments written in batches.

Counted by the MDE emulator over real sockets: a sample's alerts get their comments from one
batchUpdate, ids taken in by the CLI or webhook are read with one list call, and alerts the
poller listed (with their evidence) are not read again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from joedefender.domain.comments import MARKER_PREFIX
from tests.pipeline.builders import alert, file_evidence, machine, world
from tests.world import World, drain, scenario

WorldFactory = Callable[..., World]

_A = "C:\\Users\\u\\Downloads\\a.exe"
_B = "C:\\Users\\u\\Downloads\\b.exe"


def _outbreak(make_world: WorldFactory) -> tuple[World, list[str]]:
    """Six alerts on two machines that both carry two files: four alerts of one, two of the other."""
    files = {_A: "a", _B: "b"}
    alerts = [alert(n, 1 + n % 2, file_evidence("a" if n % 3 else "b", _A if n % 3 else _B)) for n in range(1, 7)]
    raw = world(
        samples={"a": "file a", "b": "file b"},
        machines=[machine(1, files=files), machine(2, files=files)],
        alerts=alerts,
        verdicts=[{"sample": "a", "detection": "malicious", "score": 90}],
    )
    return make_world(scenario(raw)), [a["id"] for a in alerts]


def _ours(w: World, alert_id: str) -> list[str]:
    return [c for c in w.comments(alert_id) if MARKER_PREFIX in c]


def test_ids_taken_in_without_data_are_read_in_one_call_and_commented_in_one_batch_per_sample(
    make_world: WorldFactory,
) -> None:
    w, ids = _outbreak(make_world)
    w.process(*ids)
    assert [len(_ours(w, i)) for i in ids] == [1] * 6
    assert w.calls("alerts.get") == 0
    assert w.calls("alerts.list") == 1
    assert w.calls("alerts.batchUpdate") == 2  # one per sample, however many alerts wait for it
    assert w.calls("alerts.update") == 0
    assert w.calls("machines.get") == 0  # the machines' health comes from the machines list
    assert 1 <= w.calls("machines.list") <= 2


def test_alerts_the_poller_listed_are_triaged_from_the_listing(make_world: WorldFactory) -> None:
    w, ids = _outbreak(make_world)
    with w.connector() as connector:
        now = datetime.now(UTC) + timedelta(minutes=1)  # the emulator shifts its alerts to the present
        assert connector.app.poll(now, timedelta(days=7)) == 6
        drain(connector, 60)
    assert [len(_ours(w, i)) for i in ids] == [1] * 6
    assert w.calls("alerts.get") == 0
    assert w.calls("alerts.list") == 1  # the poll itself
