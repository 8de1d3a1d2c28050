"""The `joedefender` command line, each command run as its own process against the emulators."""

from __future__ import annotations

import signal
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from joedefender.adapters.sqlite import SqliteStore
from joedefender.domain.comments import MARKER_PREFIX
from joedefender_emulators.scenario import ALL_PERMISSIONS
from tests.hosts import environment, joedefender
from tests.pipeline.builders import alert, file_evidence, machine, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]

_EMULATE_SETTINGS = [
    "DefenderApiBaseURL",
    "GraphApiBaseURL",
    "AzureAuthorityHost",
    "AzureTenantID",
    "AzureClientID",
    "AzureClientSecret",
    "JoeSandboxBaseURL",
    "JoeSandboxAPIKey",
    "TlsCaBundle",
]
_PATH = "C:\\Users\\eve\\Downloads\\dropper.exe"
_ENRICHED = alert(1, 1, file_evidence("dropper", _PATH))
_SKIPPED = alert(2, 1, file_evidence("dropper", _PATH), source="CustomDetection")


def _cli(*args: str, settings: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        joedefender(*args), env=environment(settings), capture_output=True, text=True, timeout=timeout, check=False
    )


def _table_rows(tables: str) -> list[list[str]]:
    """The cells of rich tables' body rows (header rows are drawn with other lines)."""
    return [
        [cell.strip() for cell in line.strip("│").split("│")] for line in tables.splitlines() if line.startswith("│")
    ]


def _rows(tables: str) -> dict[str, list[str]]:
    """Body rows by their first cell, for tables whose first column names the row."""
    return {cells[0]: cells[1:] for cells in _table_rows(tables) if cells[0]}


def _world(make_world: WorldFactory, *, analysis_seconds: float = 300, **defender: Any) -> World:
    raw = world(
        samples={"dropper": "dropper bytes"},
        machines=[machine(1, files={_PATH: "dropper"})],
        alerts=[_ENRICHED, _SKIPPED],
        verdicts=[{"sample": "dropper", "detection": "malicious", "score": 87}],
        **defender,
    )
    raw["joe"]["analysis_seconds"] = analysis_seconds
    return make_world(scenario(raw))


def _ours(w: World, alert_id: str) -> list[str]:
    return [c for c in w.comments(alert_id) if MARKER_PREFIX in c]


# -- emulate ------------------------------------------------------------------------------------


def _start_emulate(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = subprocess.Popen(
        joedefender("emulate", *args), env=environment({}), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    printed: dict[str, str] = {}
    for line in process.stdout:  # the settings come first, one NAME=VALUE a line
        name, _, value = line.rstrip("\n").partition("=")
        printed[name] = value
        if len(printed) == len(_EMULATE_SETTINGS):
            break
    return process, printed


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_emulate_prints_the_settings_then_serves_until_stopped(stop: signal.Signals) -> None:
    process, printed = _start_emulate()
    try:
        assert list(printed) == _EMULATE_SETTINGS, printed
        assert Path(printed["TlsCaBundle"]).is_file()
        verify = ssl.create_default_context(cafile=printed["TlsCaBundle"])
        clock = httpx.get(f"{printed['DefenderApiBaseURL']}/_emulator/clock", verify=verify, timeout=10)
        assert clock.status_code == 200
        assert httpx.get(f"{printed['JoeSandboxBaseURL']}/_emulator/clock", timeout=10).status_code == 200
        graph = httpx.get(f"{printed['GraphApiBaseURL']}/v1.0/security/alerts_v2", verify=verify, timeout=10)
        assert graph.status_code == 401  # Graph's security API, which wants a Graph token
        assert process.poll() is None, "emulate should keep serving"
    finally:
        process.send_signal(stop)
        try:
            returncode = process.wait(timeout=15)
        finally:
            process.kill()
            process.communicate()
    assert returncode == 0
    # The throwaway CA and server key it wrote are gone with it.
    assert not Path(printed["TlsCaBundle"]).exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read scenario"),
        ("name: broken\ndefender: [\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("samples: {a: {text: x}}\njoe: {verdicts: [{sample: nope}]}\n", "unknown samples referenced: nope"),
    ],
)
def test_emulate_with_a_bad_scenario_says_why_and_exits_2(tmp_path: Path, content: str | None, reason: str) -> None:
    path = tmp_path / "scenario.yaml"
    if content is not None:
        path.write_text(content)
    done = subprocess.run(
        joedefender("emulate", "--scenario", str(path)),
        env=environment({}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Scenario error" in done.stderr
    assert reason in " ".join(done.stderr.split())
    assert reason in " ".join(done.stderr.split()), done.stderr
    assert done.stdout == ""  # no settings printed for emulators that never started


# -- process and status -------------------------------------------------------------------------


def test_process_then_status_show_each_alert_its_jobs_and_their_history(make_world: WorldFactory) -> None:
    w = _world(make_world)
    enriched, skipped = str(_ENRICHED["id"]), str(_SKIPPED["id"])
    scale = str(w.scenario.time_scale)

    processed = _cli("process", enriched, skipped, "--time-scale", scale, settings=w.values)
    assert processed.returncode == 0, processed.stderr
    rows = _rows(processed.stdout)
    assert rows[enriched][:1] == ["accepted"]
    assert "done" in rows[enriched]
    assert "malicious 87" in rows[enriched]
    assert rows[enriched][-1] == "commented"
    assert rows[skipped][0] == "skipped"
    assert len(_ours(w, enriched)) == 1
    assert _ours(w, skipped) == []

    overview = _cli("status", settings=w.values)
    assert overview.returncode == 0, overview.stderr
    assert "Sample jobs" in overview.stdout
    assert "work items queued: 0" in overview.stdout
    rows = _rows(overview.stdout)
    assert {enriched, skipped} <= set(rows)
    sha256 = w.scenario.samples["dropper"].sha256
    assert rows[sha256][0] == "done"

    detail = _cli("status", enriched, settings=w.values)
    assert detail.returncode == 0, detail.stderr
    assert f"Alert {enriched}: accepted" in detail.stdout
    assert f"Sample sha256:{sha256}: done" in detail.stdout
    steps = {cells[1] for cells in _table_rows(detail.stdout)}  # time, step, outcome, detail
    assert {"intake", "triage", "lookup", "collect", "submit", "analysis", "write-back"} <= steps

    unknown = _cli("status", "da000000000000000000_404", settings=w.values)
    assert unknown.returncode == 1
    assert "da000000000000000000_404 is not known" in unknown.stderr


def test_status_without_a_state_store_says_so_and_exits_1(make_world: WorldFactory, tmp_path: Path) -> None:
    w = _world(make_world)
    done = _cli("status", settings=w.values | {"StatePath": str(tmp_path / "nothing-here.db")})
    assert done.returncode == 1
    assert "No state at" in done.stderr
    assert not (tmp_path / "nothing-here.db").exists()


def test_status_reads_the_store_even_when_the_network_settings_are_broken(
    make_world: WorldFactory, tmp_path: Path
) -> None:
    """`status` reads only the store: a missing CA bundle, an empty secret and a bad URL do not stop it."""
    w = _world(make_world)
    a = _ENRICHED["id"]
    w.process(a)
    broken = {
        "StatePath": w.values["StatePath"],
        "TlsCaBundle": str(tmp_path / "gone.pem"),
        "DefenderApiBaseURL": "not a url",
        "AzureTenantID": "",
    }
    done = _cli("status", a, settings=broken)
    assert done.returncode == 0, done.stderr
    assert f"Alert {a}: accepted" in done.stdout
    bad = _cli("status", settings={"StatePath": str(tmp_path)})
    assert bad.returncode == 2
    assert "StatePath" in bad.stderr


# -- check --------------------------------------------------------------------------------------


def test_check_against_the_emulators_reports_everything_ok(make_world: WorldFactory) -> None:
    w = _world(make_world)
    done = _cli("check", settings=w.values)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _rows(done.stdout)
    assert {"settings", "Entra token", "Machine.LiveResponse", "Joe Sandbox online", "Joe Sandbox quota"} <= set(rows)
    assert any(name.startswith("Library.Manage") for name in rows)
    assert {name for name, cells in rows.items() if cells[0] != "ok"} == set()
    # The systems each platform's samples would go to: the emulator lists Linux and macOS ones.
    systems = {name: " ".join(cells[1:]) for name, cells in rows.items() if name.startswith("Joe Sandbox systems")}
    assert "lnxubuntu22" in systems["Joe Sandbox systems for Linux samples"]
    assert "mac13" in systems["Joe Sandbox systems for macOS samples"]
    assert "server default" in systems["Joe Sandbox systems for Windows samples"]


def test_check_names_the_permissions_the_app_lacks(make_world: WorldFactory) -> None:
    granted = [p for p in ALL_PERMISSIONS if p not in ("Library.Manage", "Machine.LiveResponse")]
    w = _world(make_world, permissions=granted)
    done = _cli("check", settings=w.values)
    assert done.returncode == 1, done.stdout + done.stderr
    rows = _rows(done.stdout)
    problems = {name for name, cells in rows.items() if cells[0] == "problem"}
    assert problems == {"Machine.LiveResponse", "Library.Manage (list the library)"}, done.stdout
    assert rows["Alert.Read.All (list alerts)"][0] == "ok"


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "change", "named"),
    [
        (["check"], {"JoeSandboxAPIKey": ""}, "JoeSandboxAPIKey: missing"),
        # (`status` reads StatePath alone: a bad network setting does not stop it, see above)
        (["process", "da1_1"], {"DefenderApiMaxRetry": "lots"}, "DefenderApiMaxRetry: 'lots' is not a whole number"),
        (
            ["run", "--until-idle"],
            {"AzureClientSecret": "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/s/)"},
            "AzureClientSecret: is an unresolved Key Vault reference",
        ),
        (
            ["process", "da1_1"],
            {"JoeSandboxAnalysisParameters": '{"archive-password": "s3cr3t-archive", "no such": 1}'},
            "JoeSandboxAnalysisParameters: 'no such' is not a Joe Sandbox submission parameter",
        ),
    ],
)
def test_a_missing_or_bad_setting_is_named_and_no_secret_printed(
    tmp_path: Path, command: list[str], change: dict[str, str], named: str
) -> None:
    secrets = {"AzureClientSecret": "s3cr3t-client-value", "JoeSandboxAPIKey": "s3cr3t-joe-key"}
    settings = {
        "AzureTenantID": "00000000-0000-4000-8000-000000000001",
        "AzureClientID": "00000000-0000-4000-8000-000000000002",
        "StatePath": str(tmp_path / "state.db"),
        **secrets,
        **change,
    }
    done = _cli(*command, settings=settings)
    assert done.returncode == 2, done.stdout + done.stderr
    printed = " ".join((done.stdout + done.stderr).split())
    assert "Configuration error" in printed
    assert named in printed
    for secret in [*secrets.values(), "s3cr3t-archive"]:
        assert secret not in printed
    assert not (tmp_path / "state.db").exists()


# -- run ----------------------------------------------------------------------------------------


def test_run_stops_cleanly_on_sigterm_and_the_next_run_finishes_the_work(make_world: WorldFactory) -> None:
    # A long analysis keeps the job waiting on Joe when the service is told to stop.
    w = _world(make_world, analysis_seconds=1500)
    alert_id = str(_ENRICHED["id"])
    with w.connector() as connector:
        connector.app.receive(alert_id, source="test")
    settings = w.values | {"WebhookPort": "0"}
    scale = str(w.scenario.time_scale)
    service = subprocess.Popen(
        joedefender("run", "--no-poll", "--time-scale", scale),
        env=environment(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with SqliteStore(w.state_path) as store:
            deadline = time.monotonic() + 30
            while not [d for d in store.list("job") if d.data["state"] == "analysing"]:
                assert service.poll() is None, service.communicate()
                assert time.monotonic() < deadline, "the job never reached the analysis"
                time.sleep(0.05)  # watching the store for the state, with a deadline
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=30)
    finally:
        service.kill()
    assert service.returncode == 0, out + err
    assert "Traceback" not in err

    with SqliteStore(w.state_path) as store:
        items = store.items()
        assert [i.key for i in items if i.key.startswith("sample:")], "the job's next look was lost"
        assert all(i.owner == "" for i in items), "a stopped service must not leave work leased"
    assert _ours(w, alert_id) == []

    finished = _cli("run", "--until-idle", "--no-poll", "--no-webhook", "--time-scale", scale, settings=w.values)
    assert finished.returncode == 0, finished.stderr
    (comment,) = _ours(w, alert_id)
    assert comment.startswith("Joe Sandbox: MALICIOUS (score 87/100)")
    assert len(w.submissions()) == 1
