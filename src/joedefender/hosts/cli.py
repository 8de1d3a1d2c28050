"""The `joedefender` command line."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from joedefender import __version__
from joedefender.settings import ConfigurationError, Settings

if TYPE_CHECKING:
    from joedefender.pipeline.facade import Application

app = typer.Typer(
    name="joedefender",
    help="Enriches Microsoft Defender for Endpoint alerts with Joe Sandbox analyses.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

SettingsFile = Annotated[
    Path | None,
    typer.Option(
        "--settings",
        help="A KEY=VALUE file or an Azure Functions local.settings.json; the environment overrides it.",
        exists=True,
        dir_okay=False,
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log every step.")]
TimeScale = Annotated[
    float,
    typer.Option(
        min=0.0001,
        max=1.0,
        help="Only against the emulators: shrink every wait by this factor, as their scenario's time_scale does.",
    ),
]


def _logging(verbose: bool) -> None:
    from joedefender.hosts.logfilter import RepeatFilter, SafeFormatter, SafeText

    handler = RichHandler(console=errors, show_path=False, rich_tracebacks=False)
    handler.addFilter(RepeatFilter())  # a fault repeated every second is one line a minute
    handler.addFilter(SafeText())  # attacker text in a message: one line, escaped, bounded
    handler.setFormatter(SafeFormatter("%(name)s: %(message)s"))
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(name)s: %(message)s",
        handlers=[handler],
        force=True,
    )
    for noisy in ("azure", "httpx", "httpcore", "urllib3", "msal"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _store_advice(exc: Exception) -> str:
    """What to do about a state store that cannot be used, by what SQLite said."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "another process holds it locked: stop the other joedefender, or wait and run again"
    if "readonly" in text or "read-only" in text:
        return "the file or its folder is read-only for this user: make both writable, or set StatePath elsewhere"
    if "unable to open" in text:
        return "the file cannot be opened: check that its folder exists and is writable, or set StatePath elsewhere"
    if "schema version" in text:
        return "it was written by a newer joedefender: upgrade, or set StatePath elsewhere"
    if "is full" in text:
        return "the disk is full: free space and run again"
    return "it is damaged or not a joedefender database: move it aside (a new one is then created) or restore a backup"


@contextmanager
def _state_store_errors(state_path: Path, verbose: bool) -> Iterator[None]:
    """A state store that cannot be used is one line naming the file and what to do; -v adds the
    traceback."""
    from joedefender.pipeline.facade import StoreError

    try:
        yield
    except StoreError as exc:
        if verbose:
            errors.print_exception()
        path = escape(str(state_path))
        errors.print(f"[red]State store problem[/]: {path}: {escape(_store_advice(exc))}", soft_wrap=True)
        raise typer.Exit(3) from None


def _settings(file: Path | None) -> Settings:
    from joedefender.bootstrap import checked_settings

    try:
        return checked_settings(Settings.load(file=file))
    except ConfigurationError as exc:
        errors.print(f"[red]Configuration error[/]\n{escape(str(exc))}")
        raise typer.Exit(2) from exc


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
) -> None:
    """The whole flow against the emulators on the bundled scenario, with a live view."""
    with _emulators_needed():
        from joedefender.hosts.demo import run_demo

    _logging(False)
    raise typer.Exit(run_demo(console, scenario))


# formats.defender_quarantine.MAX_PAYLOAD_BYTES in MiB (GetFile's 3 GB), written out so that
# `--help` does not load the decoder.
QUARANTINE_MAX_PAYLOAD_MIB = 3072
quarantine_app = typer.Typer(help="Work with a copy of Defender's quarantine.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("decode")
def quarantine_decode(
    paths: Annotated[
        list[Path],
        typer.Argument(help="A Quarantine folder, its Entries or ResourceData folders, or single files.", exists=True),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the payload (malware!) to this new file; needs exactly one ResourceData."),
    ] = None,
    max_payload_mib: Annotated[
        int,
        typer.Option(
            min=1,
            help="Refuse a payload larger than this (a sparse block may claim any offset); raise it on purpose.",
        ),
    ] = QUARANTINE_MAX_PAYLOAD_MIB,
    verbose: Verbose = False,
) -> None:
    """Print each entry's threat name, original path, size and payload SHA-256; nothing is written
    unless --out is given. A damaged file gets a one-line error and a non-zero exit."""
    from joedefender.domain.errors import QuarantineFormatError
    from joedefender.hosts.quarantine_decode import Report, shown

    _logging(verbose)
    try:
        code = Report(console, errors, max_payload_mib << 20).run(paths, out)
    except QuarantineFormatError as exc:
        errors.print(f"[red]error:[/] {shown(str(exc))}")
        code = 2
    except Exception as exc:
        if verbose:
            raise
        errors.print(f"[red]error:[/] {type(exc).__name__}: {shown(str(exc))} (run with -v for details)")
        code = 1
    raise typer.Exit(code)


indicators_app = typer.Typer(help="See and withdraw the indicators the connector pushed to Defender (only those).")
app.add_typer(indicators_app, name="indicators")


@indicators_app.command("list")
def indicators_list(settings_file: SettingsFile = None, time_scale: TimeScale = 1.0) -> None:
    """List the connector's own active indicators, as Defender holds them."""
    from joedefender.bootstrap import open_connector
    from joedefender.domain.text import shown
    from joedefender.pipeline.facade import Clock

    _logging(False)
    settings = _settings(settings_file)
    with open_connector(settings, clock=Clock(scale=time_scale)) as connector:
        own = connector.app.own_indicators()
    table = Table(title=f"Indicators pushed by joedefender ({len(own)})")
    for column in ("id", "type", "value", "action", "expires (UTC)", "title"):
        table.add_column(column, overflow="fold")
    for item in own:
        expires = item.expires_at.strftime("%Y-%m-%d %H:%M") if item.expires_at else ""
        table.add_row(
            Text(shown(item.id, 40)),
            Text(shown(item.type, 20)),
            Text(shown(item.value, 300)),
            Text(shown(item.action, 20)),
            expires,
            Text(shown(item.title, 200)),
        )
    console.print(table)


@indicators_app.command("expire")
def indicators_expire(
    sample: Annotated[
        str | None, typer.Option(help="The sample (SHA-256, URL or sample key) whose indicators go.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Withdraw every indicator the connector pushed.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation (for scripts).")] = False,
    settings_file: SettingsFile = None,
    time_scale: TimeScale = 1.0,
) -> None:
    """Withdraw the connector's own indicators: those of one sample, or all of them."""
    from joedefender.bootstrap import open_connector
    from joedefender.domain.samples import InvalidSampleError
    from joedefender.pipeline.facade import Clock

    if (sample is None) == (not all_):
        errors.print("Give exactly one of --sample S or --all.")
        raise typer.Exit(2)
    key: str | None = None
    if sample is not None:
        try:
            key = _sample_key(sample)
        except InvalidSampleError as exc:
            errors.print(f"[red]Bad sample[/]: {escape(str(exc))}")
            raise typer.Exit(2) from exc
    elif not yes and not typer.confirm("Withdraw every indicator joedefender pushed to Defender?"):
        raise typer.Exit(1)
    _logging(False)
    settings = _settings(settings_file)
    with open_connector(settings, clock=Clock(scale=time_scale)) as connector:
        gone = connector.app.withdraw_indicators(key)
    console.print(f"withdrew {len(gone)} indicator(s)")


def _sample_key(text: str) -> str:
    """The store's key for a SHA-256, a URL, or a key as `status` shows it."""
    from joedefender.domain.samples import SampleKey

    text = text.strip()
    if text.startswith(("sha256:", "url:")):
        return text
    if "://" in text:
        return SampleKey.for_url(text).id
    return SampleKey.for_file(text).id


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
