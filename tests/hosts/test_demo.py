"""`joedefender demo` on the bundled scenario sped up: by default the MDE path (no Graph, no incidents
shown, as before; in process), and with `--graph` (its own process) alerts through Graph and
verdicts on incidents, whose tags and comments it shows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from joedefender.hosts.demo import run_demo
from joedefender_emulators.scenario import load_scenario
from tests.hosts import run_joedefender

_INCIDENTS_TITLE = "Incidents as Defender XDR now shows them (Graph)"


@pytest.fixture(scope="module")
def fast_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled demo scenario, five times faster (the demo runs it as it is)."""
    raw = load_scenario().model_dump(mode="json", by_alias=True) | {"time_scale": 0.002}
    path = tmp_path_factory.mktemp("demo") / "demo.json"
    path.write_text(json.dumps(raw))
    return path


def _demo(scenario: Path) -> str:
    console = Console(file=io.StringIO(), width=250, record=True, color_system=None)
    assert run_demo(console, scenario) == 0
    return console.export_text()


def _rows(text: str, title: str) -> dict[str, list[str]]:
    """The rows of the table under `title`, by their first cell (continuation lines joined)."""
    rows: dict[str, list[str]] = {}
    key = ""
    for line in text[text.index(title) :].splitlines()[4:]:
        if not line.startswith("│"):
            if line.startswith("└"):
                break
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        key = cells[0] or key
        rows.setdefault(key, ["" for _ in cells[1:]])
        rows[key] = [f"{old} {new}".strip() for old, new in zip(rows[key], cells[1:], strict=True)]
    return rows


def test_the_graph_demo_shows_each_incident_with_its_worst_verdict_and_one_comment_per_sample(
    fast_demo: Path,
) -> None:
    done = run_joedefender("demo", "--graph", "--scenario", str(fast_demo), settings={}, timeout=90)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "Microsoft Graph emulator https://127.0.0.1:" in text
    incidents = _rows(text, _INCIDENTS_TITLE)
    tags = {incident: cells[1] for incident, cells in incidents.items()}
    assert tags["501"] == "Finance, VIP, JoeSandbox:malicious"  # the analysts' tags kept
    assert tags["502"] == "Finance, JoeSandbox:malicious"
    assert tags["503"] == "JoeSandbox:suspicious"  # the updater (suspicious) over the build helper (clean)
    assert {tags[i] for i in ("507", "508", "509")} == {"none"}  # the skipped alerts' incidents
    comments = {incident: cells[2] for incident, cells in incidents.items()}
    assert comments["503"].count("joedefender ref") == 2  # one per sample
    assert comments["502"].startswith("Looking into the loader")
    alerts = _rows(text, "Alerts as Defender now shows them")
    assert all(alerts[a][1].count("joedefender ref") == 1 for a in alerts if a.endswith(("_1001", "_1006")))


def test_the_default_demo_shows_no_incidents_and_uses_no_graph(fast_demo: Path) -> None:
    text = _demo(fast_demo)
    assert _INCIDENTS_TITLE not in text
    assert "Microsoft Graph emulator" not in text
    alerts = _rows(text, "Alerts as Defender now shows them")
    assert alerts["da638640000000000001_1001"][1].startswith("Joe Sandbox: MALICIOUS (score 92/100)")
