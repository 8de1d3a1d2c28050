"""What a user sees when something outside the connector is wrong: one line that says what and
what to do, a non-zero exit, never a hang nor a page of traceback (unless -v asks for it)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from joedefender.adapters.sqlite import SqliteStore
from joedefender.domain.comments import MARKER_PREFIX
from tests.hosts import environment, joedefender
from tests.pipeline.builders import alert, file_evidence, machine, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]

_PATH = "C:\\Users\\eve\\Downloads\\dropper.exe"
_ALERT = alert(1, 1, file_evidence("dropper", _PATH))


def _cli(*args: str, settings: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        joedefender(*args), env=environment(settings), capture_output=True, text=True, timeout=timeout, check=False
    )


def _world(make_world: WorldFactory) -> World:
    raw = world(
        samples={"dropper": "dropper bytes"},
        machines=[machine(1, files={_PATH: "dropper"})],
        alerts=[_ALERT],
        verdicts=[{"sample": "dropper", "detection": "malicious", "score": 87}],
    )
    return make_world(scenario(raw))


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_process_with_a_key_joe_rejects_stops_with_one_line(make_world: WorldFactory) -> None:
    w = _world(make_world)
    wrong = "not-the-key-joe-knows-0123456789"
    started = time.monotonic()
    done = _cli(
        "process", str(_ALERT["id"]), "--time-scale", str(w.scenario.time_scale),
        settings=w.values | {"JoeSandboxAPIKey": wrong},
    )  # fmt: skip
    assert time.monotonic() - started < 45
    assert done.returncode == 1, done.stdout + done.stderr
    stopped = [line for line in _lines(done.stderr) if line.startswith("Stopped")]
    assert len(stopped) == 1, done.stderr
    assert "Misconfigured" in stopped[0]
    assert wrong not in done.stdout + done.stderr


def test_process_with_joes_quota_used_up_stops_with_one_line_and_parks_the_submission(
    make_world: WorldFactory,
) -> None:
    raw = world(samples={"dropper": "dropper bytes"}, machines=[machine(1, files={_PATH: "dropper"})], alerts=[_ALERT])
    raw["joe"]["quota_daily"] = 0
    w = make_world(scenario(raw))
    started = time.monotonic()
    done = _cli("process", str(_ALERT["id"]), "--time-scale", str(w.scenario.time_scale), settings=w.values)
    assert time.monotonic() - started < 45
    assert done.returncode == 1, done.stdout + done.stderr
    stopped = [line for line in _lines(done.stderr) if line.startswith("Stopped")]
    assert len(stopped) == 1, done.stderr
    assert "quota is used up" in stopped[0]
    status = _cli("status", settings=w.values)
    assert "submissions are parked until" in status.stdout, status.stdout


def test_process_with_joes_quota_used_up_midway_comments_what_it_submitted_then_names_what_is_parked(
    make_world: WorldFactory,
) -> None:
    """Quota for 2 submissions, 3 alerts with a sample each: the 2 submitted are analysed and
    commented in this run; the third is parked, named, and the run exits 1."""
    urls = [f"http://phish-{n}.example/login" for n in range(1, 4)]
    alerts = [alert(n, 1, {"entityType": "Url", "url": url}) for n, url in enumerate(urls, start=1)]
    raw = world(
        samples={},
        machines=[machine(1)],
        alerts=alerts,
        verdicts=[{"url": url, "detection": "malicious", "score": 80} for url in urls],
        time_scale=0.01,
    )
    raw["joe"] |= {"quota_daily": 2, "analysis_seconds": 120}
    w = make_world(scenario(raw))
    ids = [str(a["id"]) for a in alerts]
    done = _cli("process", *ids, "--time-scale", str(w.scenario.time_scale), settings=w.values, timeout=90)
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(w.submissions()) == 2
    commented = [i for i in ids if any(MARKER_PREFIX in c for c in w.comments(i))]
    assert len(commented) == 2, done.stdout + done.stderr
    (parked,) = set(ids) - set(commented)
    for alert_id in commented:
        (ours,) = [c for c in w.comments(alert_id) if MARKER_PREFIX in c]
        assert ours.startswith("Joe Sandbox: MALICIOUS (score 80/100)")
    stopped = [line for line in _lines(done.stderr) if line.startswith("Stopped")]
    assert len(stopped) == 1, done.stderr
    assert "quota is used up" in stopped[0]
    said = " ".join(done.stderr.split())  # rich may fold the line
    assert f"1 alert waits for it: {parked}" in said
    assert not [c for c in w.comments(parked) if MARKER_PREFIX in c]


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database, it is garbage " * 300)


def _truncated(path: Path) -> None:
    with SqliteStore(path) as store:
        for n in range(200):
            store.create("job", f"job-{n}", {"padding": "x" * 500})
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.mark.parametrize("damage", [_garbage, _truncated], ids=["garbage", "truncated"])
@pytest.mark.parametrize("command", ["status", "process"])
def test_a_damaged_database_is_one_line_naming_the_file_and_what_to_do(
    make_world: WorldFactory, tmp_path: Path, damage: Callable[[Path], None], command: str
) -> None:
    w = _world(make_world)
    state = tmp_path / "damaged.db"
    damage(state)
    args = [command] if command == "status" else [command, str(_ALERT["id"])]
    done = _cli(*args, settings=w.values | {"StatePath": str(state)})
    assert done.returncode == 3, done.stdout + done.stderr
    (line,) = _lines(done.stderr)
    assert str(state) in line
    assert "move it aside" in line
    assert "Traceback" not in done.stderr

    verbose = _cli(*args, "-v", settings=w.values | {"StatePath": str(state)})
    assert verbose.returncode == 3
    assert "Traceback" in verbose.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files anyway")
def test_a_read_only_database_says_to_make_it_writable(make_world: WorldFactory, tmp_path: Path) -> None:
    w = _world(make_world)
    folder = tmp_path / "ro"
    folder.mkdir()
    state = folder / "state.db"
    SqliteStore(state).close()
    state.chmod(0o444)
    folder.chmod(0o555)
    try:
        done = _cli("process", str(_ALERT["id"]), settings=w.values | {"StatePath": str(state)})
    finally:
        folder.chmod(0o755)
    assert done.returncode == 3, done.stderr
    (line,) = _lines(done.stderr)
    assert str(state) in line
    assert "read-only" in line


@pytest.mark.parametrize("command", ["demo", "emulate"])
def test_without_the_emulators_demo_and_emulate_say_how_to_get_them(command: str, tmp_path: Path) -> None:
    """The emulators are a distribution of their own: where they are not installed, the two commands
    that need them say so in one line, with the command that installs them, and exit 2."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _NoEmulators:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'joedefender_emulators':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _NoEmulators())\n"
    )
    env = {**environment({}), "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(joedefender(command), env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "emulators are not installed" in done.stderr
    assert "pip install ./emulators" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
