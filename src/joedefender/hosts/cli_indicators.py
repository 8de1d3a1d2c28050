"""`joedefender indicators`: see and withdraw the indicators the connector pushed (only those)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from joedefender.hosts.terminal import SettingsFile, TimeScale, console, errors
from joedefender.hosts.terminal import load_settings as _settings
from joedefender.hosts.terminal import setup_logging as _logging

indicators_app = typer.Typer(help="See and withdraw the indicators the connector pushed to Defender (only those).")


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
