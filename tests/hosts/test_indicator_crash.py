"""A SIGKILL of the worker process while its indicator import is in flight, then a restart.

Defender (the emulator) carries the import out after the process died: the push was recorded as
`importing` before the call, so the restarted connector looks the values up first, finds its own
indicators with the expiry it asked for, records their ids, and neither duplicates nor repeats.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from joedefender.domain.jobs import PushState
from tests.hosts import environment, joedefender
from tests.pipeline.builders import alert, file_evidence, machine, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]

_PATH = "C:\\Users\\x\\payload.exe"
_IMPORT_DELAY = 3.0  # real seconds the emulator holds the import before carrying it out
_IOCS = {
    "domains": [{"value": "c2.evil.example", "malicious": True}],
    "ips": [{"value": "185.195.25.79", "malicious": True}],
}


def _wait_for(what: str, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_sigkill_between_the_import_and_saving_it_leaves_no_duplicate(
    make_world: WorldFactory, tmp_path: Path
) -> None:
    a = alert(1, 1, file_evidence("payload", _PATH))
    raw = world(
        samples={"payload": "payload bytes"},
        machines=[machine(1, files={_PATH: "payload"})],
        alerts=[a],
        verdicts=[{"sample": "payload", "detection": "malicious", "score": 95, "iocs": _IOCS}],
    )
    raw["faults"] = [
        {"service": "defender", "method": "POST", "path": "^/api/indicators/import", "delay": _IMPORT_DELAY, "times": 1}
    ]
    w = make_world(scenario(raw), DefenderIndicatorsEnabled="true")
    with w.connector() as connector:
        connector.app.receive(a["id"], source="test")
    command = joedefender(
        "run", "--until-idle", "--no-poll", "--no-webhook", "--time-scale", str(w.scenario.time_scale)
    )
    env = environment(w.values)

    with (tmp_path / "doomed.log").open("wb") as out:
        doomed = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # The import has reached Defender (its fault fired) and is held there: kill the connector now.
        _wait_for("the import to arrive", lambda: w.defender("/_emulator/faults")[0]["fired"] == 1, timeout=60)
    finally:
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
    with w.connector() as connector:
        push = connector.ctx.pushes.get(f"sha256:{w.scenario.samples['payload'].sha256}")
        assert push is not None
        assert push.record.state == PushState.IMPORTING  # the outcome is not known to the store
    _wait_for("Defender to carry the import out", lambda: len(w.defender("/_emulator/indicators")) == 3)

    final = subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
    assert final.returncode == 0, final.stdout.decode() + final.stderr.decode()

    indicators = w.defender("/_emulator/indicators")
    assert Counter((i["indicatorType"], i["indicatorValue"]) for i in indicators) == Counter(
        {
            ("FileSha256", w.scenario.samples["payload"].sha256): 1,
            ("DomainName", "c2.evil.example"): 1,
            ("IpAddress", "185.195.25.79"): 1,
        }
    )
    assert w.calls("indicators.import") == 1  # the lookup showed it done: not imported again
    with w.connector() as connector:
        push = connector.ctx.pushes.get(f"sha256:{w.scenario.samples['payload'].sha256}")
        assert push is not None
        assert push.record.state == PushState.DONE
        assert sorted(push.record.ids) == sorted(i["id"] for i in indicators)
