"""`joedefender quarantine`: read a copy of Defender's quarantine on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from joedefender.hosts.terminal import Verbose, console, errors
from joedefender.hosts.terminal import setup_logging as _logging

# formats.defender_quarantine.MAX_PAYLOAD_BYTES in MiB (GetFile's 3 GB), written out so that
# `--help` does not load the decoder.
QUARANTINE_MAX_PAYLOAD_MIB = 3072
quarantine_app = typer.Typer(help="Work with a copy of Defender's quarantine.", no_args_is_help=True)


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
