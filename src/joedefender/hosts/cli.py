"""The `joedefender` command line."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from joedefender import __version__
from joedefender.hosts.cli_indicators import indicators_app
from joedefender.hosts.cli_quarantine import quarantine_app
from joedefender.hosts.terminal import SettingsFile, TimeScale, Verbose, console, errors
from joedefender.hosts.terminal import load_settings as _settings
from joedefender.hosts.terminal import setup_logging as _logging
from joedefender.hosts.terminal import state_store_errors as _state_store_errors
from joedefender.settings import ConfigurationError, Settings

if TYPE_CHECKING:
    from joedefender.pipeline.facade import Application

app = typer.Typer(
    name="joedefender",
    help="Enriches Microsoft Defender for Endpoint alerts with Joe Sandbox analyses.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(indicators_app, name="indicators")

_NAMED = 20  # alerts named when `process` stops on Joe's quota; the rest are counted
_EMULATORS_MISSING = (
    "The emulators are not installed: they are a distribution of their own (joedefender-emulators), "
    "for the demo, the tests and `emulate`. From a checkout: `make install`, or `pip install ./emulators`."
)


@contextmanager
def _emulators_needed() -> Iterator[None]:
    """Say how to get the emulators when `emulate` or `demo` cannot import them."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("joedefender_emulators"):
            raise
        errors.print(f"[red]{escape(_EMULATORS_MISSING)}[/]")
        raise typer.Exit(2) from exc


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
def secret() -> None:
    """Print a fresh random WebhookSecret (32 bytes from the OS, URL-safe: 43 characters)."""
    from joedefender.domain.shared_secret import new_shared_secret

    # Plain print, not rich: no markup, wrapping or colour may touch the value.
    print(new_shared_secret())


@app.command()
def emulate(
    scenario: Annotated[Path | None, typer.Option(help="Scenario file (default: the bundled demo).")] = None,
    defender_port: Annotated[int, typer.Option(help="MDE emulator port (0: any free port).")] = 0,
    joe_port: Annotated[int, typer.Option(help="Joe Sandbox emulator port (0: any free port).")] = 0,
    graph_port: Annotated[int, typer.Option(help="Microsoft Graph emulator port (0: any free port).")] = 0,
) -> None:
    """Run the MDE, Graph and Joe Sandbox emulators; print the settings that reach them, then serve."""
    with _emulators_needed():
        from joedefender_emulators.runner import Emulators
        from joedefender_emulators.scenario import ScenarioError, load_scenario

    _logging(False)
    try:
        loaded = load_scenario(scenario)
    except ScenarioError as exc:
        errors.print(f"[red]Scenario error[/]: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Emulators(loaded, defender_port=defender_port, joe_port=joe_port, graph_port=graph_port) as emulators:
        for name, value in emulators.settings().items():
            print(f"{name}={value}", flush=True)
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass


@app.command()
def run(
    settings_file: SettingsFile = None,
    until_idle: Annotated[bool, typer.Option(help="Process what is due and pending, then exit.")] = False,
    poll: Annotated[bool, typer.Option(help="Run the built-in poller.")] = True,
    webhook: Annotated[bool, typer.Option(help="Serve the webhook.")] = True,
    verbose: Verbose = False,
    time_scale: TimeScale = 1.0,
) -> None:
    """Run the service: poller, webhook and workers, until SIGTERM or SIGINT."""
    from joedefender.bootstrap import open_connector
    from joedefender.hosts.standalone.service import Service, ServiceOptions
    from joedefender.pipeline.facade import Clock

    _logging(verbose)
    settings = _settings(settings_file)
    with (
        _state_store_errors(settings.state_path, verbose),
        open_connector(settings, clock=Clock(scale=time_scale)) as connector,
    ):
        service = Service(connector, ServiceOptions(poll=poll, webhook=webhook, until_idle=until_idle))
        service.install_signal_handlers()
        service.run()


@app.command()
def process(
    alert_ids: Annotated[list[str], typer.Argument(help="Defender alert ids.")],
    settings_file: SettingsFile = None,
    verbose: Verbose = False,
    time_scale: TimeScale = 1.0,
) -> None:
    """Enrich the given alerts now, then show how each ended."""
    from joedefender.bootstrap import open_connector
    from joedefender.hosts.standalone.status import alerts_table
    from joedefender.hosts.standalone.workers import WorkerPool
    from joedefender.pipeline.facade import Clock, InvalidAlertError

    _logging(verbose)
    settings = _settings(settings_file)
    with (
        _state_store_errors(settings.state_path, verbose),
        open_connector(settings, clock=Clock(scale=time_scale)) as connector,
    ):
        app = connector.app
        try:
            for alert_id in alert_ids:
                app.receive(alert_id, source="cli")
        except InvalidAlertError as exc:
            errors.print(f"[red]Bad alert id[/]: {escape(str(exc))}")
            raise typer.Exit(2) from exc
        workers = WorkerPool(app, settings.workers)
        workers.start()
        try:
            # Everything that can go on does (analyses of what was submitted, comments); what waits
            # for Joe's quota to reset, or what every item would meet (a rejected key), does not
            # keep the command waiting.
            while app.configuration_problem is None and not workers.wait_idle_for(
                0.5, before=app.status.parked_until()
            ):
                pass
        finally:
            workers.stop()
        problem = app.configuration_problem
        if problem is not None:
            errors.print(
                f"[red]Stopped[/]: {escape(f'{type(problem).__name__}: {problem}')} "
                "(fix the settings; `joedefender check` tests them)"
            )
            raise typer.Exit(1)
        console.print(alerts_table(app.status.records))
        _stop_if_parked(app)


def _stop_if_parked(app: Application) -> None:
    """After `process` did all it could: name the alerts whose samples wait for Joe's quota."""
    exhausted = app.quota_exhausted
    waiting = app.status.alerts_waiting_for_quota() if exhausted is not None else []
    if exhausted is None or not waiting:
        return
    until = app.status.parked_until()
    when = f" (parked until {datetime.fromtimestamp(until, UTC):%Y-%m-%d %H:%M} UTC)" if until else ""
    shown = ", ".join(waiting[:_NAMED]) + (f" and {len(waiting) - _NAMED} more" if len(waiting) > _NAMED else "")
    count = f"1 alert waits for it: {shown}" if len(waiting) == 1 else f"{len(waiting)} alerts wait for it: {shown}"
    errors.print(
        f"[red]Stopped[/]: Joe Sandbox's submission quota is used up ({escape(exhausted.message)}); "
        f"{escape(count)}{when}; the rest is done, and `joedefender run` carries these on once it resets"
    )
    raise typer.Exit(1)


@app.command()
def status(
    alert_id: Annotated[str | None, typer.Argument(help="Show one alert's samples and step history.")] = None,
    settings_file: SettingsFile = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the traceback of an error.")] = False,
) -> None:
    """Show jobs, their state and step history, from the state store."""
    from joedefender.bootstrap import open_status
    from joedefender.hosts.standalone.status import print_status

    try:  # the store alone: the network settings need not be valid here
        state_path = Settings.load_state_path(file=settings_file)
    except ConfigurationError as exc:
        errors.print(f"[red]Configuration error[/]\n{escape(str(exc))}")
        raise typer.Exit(2) from exc
    if not state_path.exists():
        errors.print(f"No state at {escape(str(state_path))}: the connector has not run with this StatePath.")
        raise typer.Exit(1)
    with _state_store_errors(state_path, verbose), open_status(state_path) as view:
        found = print_status(view, console, alert_id)
    if not found:
        errors.print(f"Alert {escape(str(alert_id))} is not known to the connector.")
        raise typer.Exit(1)


@app.command()
def check(settings_file: SettingsFile = None) -> None:
    """Validate the settings, get a token, try each permission, check Joe Sandbox and its quota."""
    from joedefender.bootstrap import check as run_checks

    _logging(False)
    settings = _settings(settings_file)
    results = run_checks(settings)
    table = Table(title="joedefender check")
    for column in ("check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for result in results:
        # the detail quotes what Defender and Joe answered: text, not markup
        table.add_row(Text(result.name), "[green]ok[/]" if result.ok else "[red]problem[/]", Text(result.detail))
    console.print(table)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def demo(
    scenario: Annotated[Path | None, typer.Option(help="Scenario file (default: the bundled demo).")] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Afterwards, keep the operator's page up on the demo's state until Ctrl-C.")
    ] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="The page's port with --serve (0: any free one).")] = 8080,
    graph: Annotated[
        bool, typer.Option("--graph", help="Alerts through Microsoft Graph, verdicts on incidents (tags, comments).")
    ] = False,
) -> None:
    """The whole flow against the emulators on the bundled scenario, with a live view."""
    with _emulators_needed():
        from joedefender.hosts.demo import run_demo

    _logging(False)
    raise typer.Exit(run_demo(console, scenario, graph=graph, serve_port=port if serve else None))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
