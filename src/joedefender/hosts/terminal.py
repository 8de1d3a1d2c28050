"""What every command shares: the two consoles, the common options, logging that keeps attacker
text safe, the settings with their errors said in one line, and the state store's errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from joedefender.settings import ConfigurationError, Settings

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


def setup_logging(verbose: bool) -> None:
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


def store_advice(exc: Exception) -> str:
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
def state_store_errors(state_path: Path, verbose: bool) -> Iterator[None]:
    """A state store that cannot be used is one line naming the file and what to do; -v adds the
    traceback."""
    from joedefender.pipeline.facade import StoreError

    try:
        yield
    except StoreError as exc:
        if verbose:
            errors.print_exception()
        path = escape(str(state_path))
        errors.print(f"[red]State store problem[/]: {path}: {escape(store_advice(exc))}", soft_wrap=True)
        raise typer.Exit(3) from None


def load_settings(file: Path | None) -> Settings:
    from joedefender.bootstrap import checked_settings

    try:
        return checked_settings(Settings.load(file=file))
    except ConfigurationError as exc:
        errors.print(f"[red]Configuration error[/]\n{escape(str(exc))}")
        raise typer.Exit(2) from exc
