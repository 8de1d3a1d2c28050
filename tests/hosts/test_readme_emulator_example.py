"""The README's own emulator example, as a user types it: `joedefender emulate > emu.env &`, then
`joedefender run --settings emu.env --until-idle --time-scale 0.01`. The poller (on the real
clock, looking back the default hour) must find the demo scenario's alerts, and every alert the
filters let through must end with exactly one comment carrying its verdict."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path

import httpx

from joedefender.domain.comments import MARKER_PREFIX
from joedefender_emulators.scenario import load_scenario
from tests.hosts import environment, joedefender

# The demo scenario's alerts that pass the default filters and carry a file, a process image that
# is not the system's, a command-line target or a URL; and the one whose file only a restore could
# recover, which the default settings do not allow.
_ELIGIBLE = [f"da6386400000000000{n:02d}_10{n:02d}" for n in (*range(1, 8), 11, 14, 15)]
_RESTORE_NEEDED = "da638640000000000012_1012"
_SETTINGS = 9  # the NAME=VALUE lines `emulate` prints


def _settings(env_file: Path, emulator: subprocess.Popen[bytes], timeout: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in env_file.read_text().splitlines() if "=" in line]
        if len(lines) >= _SETTINGS:
            return dict(line.split("=", 1) for line in lines)
        assert emulator.poll() is None, env_file.read_text()
        time.sleep(0.05)
    raise AssertionError(f"`joedefender emulate` printed no settings within {timeout} s")


def test_the_readme_emulator_example_comments_every_eligible_alert(tmp_path: Path) -> None:
    env_file = tmp_path / "emu.env"
    with env_file.open("wb") as out:
        emulator = subprocess.Popen(joedefender("emulate"), cwd=tmp_path, env=environment({}), stdout=out)
    try:
        settings = _settings(env_file, emulator)
        done = subprocess.run(
            joedefender("run", "--settings", "emu.env", "--until-idle", "--time-scale", "0.01"),
            cwd=tmp_path,
            # The README's command as given; only the webhook's port is any free one, so the test
            # does not depend on 8080 being free on a machine shared with other runs.
            env=environment({"WebhookPort": "0"}),
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        with httpx.Client(verify=ssl.create_default_context(cafile=settings["TlsCaBundle"]), timeout=10) as http:
            alerts = http.get(f"{settings['DefenderApiBaseURL']}/_emulator/alerts").json()["value"]
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    comments = {a["id"]: [c["comment"] for c in a["comments"] if MARKER_PREFIX in c["comment"]] for a in alerts}
    for alert_id in _ELIGIBLE:
        assert len(comments[alert_id]) == 1, (alert_id, comments[alert_id], done.stderr.decode())
        assert comments[alert_id][0].startswith("Joe Sandbox: "), comments[alert_id][0]
        assert "not analysed" not in comments[alert_id][0], comments[alert_id][0]
    (restore_needed,) = comments[_RESTORE_NEEDED]
    assert restore_needed.startswith("Joe Sandbox: not analysed"), restore_needed
    assert "AllowQuarantineRestore=true" in restore_needed
    demo_ids = {a["id"] for a in load_scenario().defender.alerts}
    assert set(comments) == demo_ids
    assert [alert_id for alert_id in demo_ids - {*_ELIGIBLE, _RESTORE_NEEDED} if comments[alert_id]] == []
