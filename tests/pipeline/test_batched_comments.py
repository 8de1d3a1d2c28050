"""Batched write-back: a sample's alerts share one batchUpdate, and exactly one comment each."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from joedefender.domain.comments import MARKER_PREFIX
from joedefender.domain.errors import Transient
from joedefender.domain.jobs import LinkState
from tests.fakes import FakeDefender, file_alert, url_alert
from tests.pipeline.test_steps import M1, M2, PAYLOAD, Rig


def _ours(rig: Rig, alert_id: str) -> list[str]:
    return [c for c in rig.defender.comments(alert_id) if MARKER_PREFIX in c]


def _three_alerts(rig: Rig) -> list[str]:
    for machine in (M1, M2):
        rig.defender.add_machine(machine)
        rig.defender.files[(machine, "C:\\Users\\u\\x.exe")] = PAYLOAD
    alerts = [file_alert(f"a{n}", (M1, M2)[n % 2], PAYLOAD) for n in range(3)]
    rig.receive(*alerts)
    return [a.id for a in alerts]


def test_a_batch_whose_answer_was_lost_is_read_back_and_not_written_twice() -> None:
    rig = Rig()
    lost = Transient("timed out", service="defender", maybe_applied=True)
    rig.defender.fail("comment_alerts", lost, after=True)
    ids = _three_alerts(rig)
    rig.drain()
    assert [len(_ours(rig, i)) for i in ids] == [1, 1, 1]
    assert rig.defender.calls["comment_alerts"] == 1
    assert rig.defender.calls["add_comment"] == 0
    assert [h.outcome for h in rig.store.history("alert:a0") if h.step == "write-back"] == ["already commented"]
    assert {link.record.state for link in rig.ctx.links.list()} == {LinkState.COMMENTED}


def test_a_batch_refused_for_an_alert_that_is_gone_still_comments_the_others_once() -> None:
    class Vanishing(FakeDefender):
        def comment_alerts(self, alert_ids: Sequence[str], text: str) -> None:
            self.alerts.pop("a2", None)  # deleted in Defender just before the batch
            super().comment_alerts(alert_ids, text)

    rig = Rig(defender=Vanishing())
    _three_alerts(rig)
    rig.drain(max_steps=5000)
    assert [len(_ours(rig, i)) for i in ("a0", "a1")] == [1, 1]
    states = {link.record.alert_id: link.record.state for link in rig.ctx.links.list()}
    assert states == {"a0": LinkState.COMMENTED, "a1": LinkState.COMMENTED, "a2": LinkState.WRITING}


class _OneCallPerAlert(FakeDefender):
    batches_comments = False  # as Graph's alerts_v2: `comment_alerts` is one POST per alert


@pytest.mark.parametrize("port", [FakeDefender, _OneCallPerAlert], ids=["batchUpdate", "one-call-per-alert"])
def test_only_a_port_that_batches_waits_for_batch_turns(port: type[FakeDefender]) -> None:
    """Twelve samples, two alerts each, all ending together: batchUpdate's 10 a minute puts the
    last two batches a minute later; a port without batches (Graph) comments all at once, paced
    only by its own client."""
    rig = Rig(defender=port())
    urls = [f"http://phish-{n}.example/login" for n in range(12)]
    rig.receive(*[url_alert(f"a{n}x{k}", url) for n, url in enumerate(urls) for k in (1, 2)])
    rig.drain()
    times = [link.record.commented_at or 0.0 for link in rig.ctx.links.list()]
    assert len(times) == 24
    assert 0.0 not in times
    spread = max(times) - min(times)
    assert rig.defender.calls["comment_alerts"] == 12
    if port.batches_comments:
        assert spread >= 60.0, spread
    else:
        assert spread < 60.0, spread
