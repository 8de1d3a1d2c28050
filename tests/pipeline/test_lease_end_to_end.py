"""Steps that outlive their work item's lease, against both emulators over sockets.

On the tests' clock a step's lease is 2 real seconds. Each test makes one step take about twice
that (the emulators delay an answer, in real seconds), with four workers ready to take an item
whose lease ran out. Without renewal a second worker ran the same step meanwhile: a sample
submitted twice, a second live response, two identical comments. The heartbeat renews the lease
while the step runs, so the step runs once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from joedefender.domain.comments import MARKER_PREFIX
from tests.pipeline.builders import alert, file_evidence, machine, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]

_PATH = "C:\\Users\\carol\\Downloads\\big.exe"
_LEASE = 2.0  # PipelineConfig.step_lease at the tests' time scale
_DELAY = 1.6  # real seconds an answer is held; each step below is held twice that, past the lease


def _one_file_world(make_world: WorldFactory, faults: list[dict[str, Any]]) -> tuple[World, str]:
    a = alert(1, 1, file_evidence("big", _PATH))
    raw = world(
        samples={"big": "a sample that takes long to move"},
        machines=[machine(1, files={_PATH: "big"})],
        alerts=[a],
        verdicts=[{"sample": "big", "detection": "malicious", "score": 90}],
    )
    raw["faults"] = faults
    w = make_world(scenario(raw))
    assert w.settings.workers >= 2
    return w, str(a["id"])


def _enriched_once(w: World, alert_id: str) -> None:
    ours = [c for c in w.comments(alert_id) if MARKER_PREFIX in c]
    assert len(ours) == 1, ours
    assert len(w.submissions()) == 1
    assert len(w.live_responses()) == 1


def _fired(w: World, service: str) -> list[int]:
    """How often each of the service's fault rules fired: how many requests it slowed or refused."""
    rules = w.defender("/_emulator/faults") if service == "defender" else w.joe("/_emulator/faults")
    return [int(rule["fired"]) for rule in rules]


def test_a_slow_getfile_and_upload_longer_than_the_lease_submit_once(make_world: WorldFactory) -> None:
    w, alert_id = _one_file_world(
        make_world,
        [
            {"service": "defender", "method": "GET", "path": "^/investigation-actions-data/", "delay": _DELAY},
            {"service": "joe", "method": "POST", "path": "submission/(new|chunked-sample)", "delay": _DELAY},
        ],
    )
    assert 2 * _DELAY > _LEASE
    w.process(alert_id, timeout=60)
    _enriched_once(w, alert_id)
    assert _fired(w, "defender") == [1]  # the file was downloaded once, by one worker
    assert _fired(w, "joe") == [1]


def test_a_patch_held_past_the_lease_comments_once(make_world: WorldFactory) -> None:
    w, alert_id = _one_file_world(
        make_world, [{"service": "defender", "method": "PATCH", "path": "^/api/alerts/", "delay": 2 * _DELAY}]
    )
    w.process(alert_id, timeout=60)
    _enriched_once(w, alert_id)
    assert _fired(w, "defender") == [1]


def test_a_worker_waiting_out_a_429_keeps_its_collection(make_world: WorldFactory) -> None:
    retry_after = round(2 * _DELAY)
    w, alert_id = _one_file_world(
        make_world,
        [
            {
                "service": "defender",
                "method": "POST",
                "path": "runliveresponse$",
                "status": 429,
                "retry_after": retry_after,
                "times": 1,
            }
        ],
    )
    assert retry_after > _LEASE
    w.process(alert_id, timeout=60)
    _enriched_once(w, alert_id)
    assert _fired(w, "defender") == [1]
    assert w.calls("liveresponse.run") == 2  # the 429, then the one live response after the wait
