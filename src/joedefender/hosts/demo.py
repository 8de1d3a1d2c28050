"""`joedefender demo`: the whole flow against the emulators, on the embedded default.

Starts the emulators on the bundled scenario, runs the connector on a temporary SQLite database
with its waits scaled to the emulators' clock, shows live progress, then every alert with its
outcome and the comments as Defender now holds them. `--graph` runs the Graph path: alerts read
and commented through Microsoft Graph, verdicts on incidents on, and the incidents shown too. It
ends on its own (scripts and checks run it unattended); with `--serve` it keeps the operator's page
up on the demo's state until Ctrl-C.
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from joedefender.bootstrap import Connector, open_connector
from joedefender.hosts.standalone.poller import Poller
from joedefender.hosts.standalone.status import alerts_table, jobs_table
from joedefender.hosts.standalone.webhook import Webhook
from joedefender.hosts.standalone.workers import WorkerPool
from joedefender.pipeline.facade import Application, Clock
from joedefender.settings import Settings
from joedefender_emulators.runner import Emulators
from joedefender_emulators.scenario import Scenario, load_scenario


def _lookback(scenario: Scenario) -> timedelta:
    """Far enough back to see every alert of the scenario, whatever day the demo runs."""
    times = [
        datetime.fromisoformat(str(a["lastUpdateTime"]).replace("Z", "+00:00"))
        for a in scenario.defender.alerts
        if a.get("lastUpdateTime")
    ]
    oldest = min(times, default=datetime.now(UTC))
    return datetime.now(UTC) - oldest + timedelta(hours=1)


# The Graph path: alerts through Graph's alerts_v2, and the verdicts on their incidents.
GRAPH_SETTINGS = {"AlertSource": "graph", "DefenderIncidentTags": "true", "DefenderIncidentComments": "true"}


def demo_settings(emulators: Emulators, state_path: Path, *, graph: bool = False) -> Settings:
    values = emulators.settings() | {
        "StatePath": str(state_path),
        "JoeSandboxResubmitAfterDays": "7",
        "Workers": "4",
        "PollIntervalSeconds": "0",
    }
    return Settings.from_mapping(values | (GRAPH_SETTINGS if graph else {}))


def _progress(connector: Connector, started: float) -> Group:
    status = connector.app.status
    return Group(
        alerts_table(status.records),
        jobs_table(status.records),
        f"elapsed {time.monotonic() - started:5.1f} s, work items queued: {status.pending()}",
    )


def _emulator_view(emulators: Emulators, url: str, what: str) -> list[dict[str, Any]]:
    """What an emulator holds now (`what`: alerts, incidents), from its inspection routes."""
    with httpx.Client(verify=emulators.certificates.client_context(), timeout=10) as http:
        response = http.get(f"{url}/_emulator/{what}")
        response.raise_for_status()
        body = response.json()
    return list(body.get("value", body) if isinstance(body, dict) else body)


def _comments_text(comments: list[dict[str, Any]] | None) -> Text:
    # Defender's data, shown as text: Rich markup in a title, tag or comment is not interpreted
    texts = [str(c.get("comment", "")) for c in comments or []]
    return Text("\n\n".join(texts)) if texts else Text("none", style="dim")


def _incidents_table(incidents: list[dict[str, Any]]) -> Table:
    table = Table(title="Incidents as Defender XDR now shows them (Graph)", expand=True, show_lines=True)
    for column in ("incident", "title", "tags", "comments"):
        table.add_column(column, overflow="fold")
    for incident in incidents:
        tags = Text(", ".join(str(t) for t in incident.get("customTags") or []) or "none")
        name = Text(str(incident.get("displayName") or ""))
        table.add_row(Text(str(incident.get("id"))), name, tags, _comments_text(incident.get("comments")))
    return table


def _comments_table(alerts: list[dict[str, Any]]) -> Table:
    table = Table(title="Alerts as Defender now shows them", expand=True, show_lines=True)
    table.add_column("alert", overflow="fold")
    table.add_column("title", overflow="fold")
    table.add_column("comments", overflow="fold")
    for alert in alerts:
        table.add_row(
            Text(str(alert.get("id"))), Text(str(alert.get("title") or "")), _comments_text(alert.get("comments"))
        )
    return table


def serve_page(app: Application, port: int, console: Console) -> int:
    """The operator's page on loopback over the demo's state, until Ctrl-C (or SIGTERM)."""
    try:
        webhook = Webhook(app, secret=None, host="127.0.0.1", port=port)
    except OSError as exc:
        console.print(f"The page cannot listen on 127.0.0.1:{port} ({exc.strerror}); --port 0 takes any free port.")
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    webhook.start()
    console.print(f"The operator's page shows the demo's state at {webhook.url}/ui")
    console.print("Serving it until Ctrl-C.")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        webhook.stop()
    console.print("Stopped serving the page.")
    return 0


def run_demo(
    console: Console, scenario_path: Path | None = None, *, graph: bool = False, serve_port: int | None = None
) -> int:
    """`graph`: the Graph path; `serve_port`: keep the operator's page up on that port (0: any free
    one) once done."""
    scenario = load_scenario(scenario_path)
    started = time.monotonic()
    name, description = escape(scenario.name), escape(scenario.description.strip())
    console.print(Panel(f"joedefender demo: scenario [bold]{name}[/]\n{description}"))
    with tempfile.TemporaryDirectory(prefix="joedefender-demo-") as folder, Emulators(scenario) as emulators:
        settings = demo_settings(emulators, Path(folder) / "demo.db", graph=graph)
        console.print(f"Defender emulator {emulators.defender.url}, Joe Sandbox emulator {emulators.joe.url}")
        if graph:
            console.print(
                f"Microsoft Graph emulator {emulators.graph.url}: alerts through Graph, verdicts on incidents"
            )
        with open_connector(settings, clock=Clock(scale=scenario.time_scale)) as connector:
            app = connector.app
            workers = WorkerPool(app, settings.workers)
            poller = Poller(app, interval=0, lookback=_lookback(scenario), clock=emulators.clock.now)
            taken = poller.poll_once()
            console.print(f"The poller took in {taken} alert(s) that pass the filters.")
            workers.start()
            try:
                with Live(_progress(connector, started), console=console, refresh_per_second=4) as live:
                    while app.pending():
                        workers.wait_idle_for(0.25)
                        live.update(_progress(connector, started))
            finally:
                workers.stop()
            console.print(alerts_table(app.status.records))
            console.print(_comments_table(_emulator_view(emulators, emulators.defender.url, "alerts")))
            if graph:
                console.print(_incidents_table(_emulator_view(emulators, emulators.graph.url, "incidents")))
            console.print(f"Demo finished in {time.monotonic() - started:.1f} s.")
            if serve_port is not None:
                return serve_page(app, serve_port, console)
    return 0
