"""`joedefender quarantine decode`: read a copied Defender quarantine on the responder's machine.

Given a Quarantine folder (or its Entries or ResourceData subfolders, or single files), prints
per entry the threat name, original path, size and SHA-256 of the payload. The payload is
malware: it is hashed while streaming and written nowhere, except to the one path given with
--out. Every string comes from the attacker's side, so it is printed escaped and bounded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rich.console import Console
from rich.markup import escape

from joedefender.domain.errors import QuarantineFormatError
from joedefender.domain.text import shown as safe_text
from joedefender.formats.defender_quarantine import (
    MAX_ENTRIES_BYTES,
    PayloadLimitError,
    QuarantineEntry,
    ResourceDecoder,
    ResourceInfo,
    parse_entries,
    rc4,
)

_CHUNK = 1 << 20
_MAX_SHOWN = 300
_ENTRIES_MAGIC = b"\xdb\xe8\xc5\x01"
_MAX_FILES = 100_000


def shown(text: str) -> str:
    """An attacker-chosen string made safe for the terminal (`joedefender.domain.text.shown`), its
    Rich markup escaped, at most _MAX_SHOWN characters."""
    return escape(safe_text(text, _MAX_SHOWN))


@dataclass(frozen=True)
class Decoded:
    """One ResourceData file, decoded: the payload's size and hash, and its streams."""

    size: int
    sha256: str
    info: ResourceInfo


def decode_file(path: Path, max_payload_bytes: int, sink: BinaryIO | None = None) -> Decoded:
    """Decode one ResourceData file, chunk by chunk; the payload goes only to ``sink``."""
    decoder = ResourceDecoder(max_payload_bytes)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            for payload in decoder.feed(chunk):
                digest.update(payload)
                if sink is not None:
                    sink.write(payload)
    info = decoder.finish()
    return Decoded(info.payload_size, digest.hexdigest(), info)


def _files(paths: list[Path]) -> Iterator[Path]:
    """The files named, and the files under the folders named (sorted, bounded)."""
    count = 0
    for path in paths:
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in found:
            count += 1
            if count > _MAX_FILES:
                raise QuarantineFormatError(f"more than {_MAX_FILES} files given")
            yield file


def _is_entries(path: Path) -> bool:
    with path.open("rb") as handle:
        return rc4(handle.read(4)) == _ENTRIES_MAGIC


class Report:
    """Reads what was given and prints it; counts the damaged files for the exit code."""

    def __init__(self, console: Console, errors: Console, max_payload_bytes: int) -> None:
        self.console, self.errors = console, errors
        self.max_payload_bytes = max_payload_bytes
        self.damaged = 0

    def run(self, paths: list[Path], out: Path | None) -> int:
        entries: list[tuple[Path, QuarantineEntry]] = []
        resources: dict[str, Path] = {}
        for file in _files(paths):
            if file.parent.parent.name.lower() == "resources":
                continue  # Resources\\XX\\ID: Defender's small index files; nothing to report
            try:
                if _is_entries(file):
                    with file.open("rb") as handle:  # at most one byte past the limit, however large
                        entries.append((file, parse_entries(handle.read(MAX_ENTRIES_BYTES + 1))))
                else:
                    resources[file.name.upper()] = file
            except (QuarantineFormatError, OSError) as exc:
                self._damaged(file, exc)
        if out is not None and len(resources) != 1:
            self.errors.print(f"[red]error:[/] --out needs exactly one ResourceData file, {len(resources)} given")
            return 2
        described: set[str] = set()
        for file, entry in entries:
            self._entry(file, entry, resources, described, out)
        for name, file in sorted(resources.items()):
            if name not in described:
                self._resource(file, out)
        return 1 if self.damaged else 0

    def _damaged(self, file: Path, exc: Exception) -> None:
        self.damaged += 1
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, PayloadLimitError):
            reason += f" ({exc.limit >> 20} MiB); raise it with --max-payload-mib if the file is really that large"
        self.errors.print(f"[red]error:[/] {shown(str(file))}: {shown(reason)}", soft_wrap=True)

    def _entry(
        self, file: Path, entry: QuarantineEntry, resources: dict[str, Path], described: set[str], out: Path | None
    ) -> None:
        self.console.print(f"[bold]{shown(str(file))}[/]", soft_wrap=True)
        self.console.print(f"  threat:   {shown(entry.threat_name)} (id {entry.threat_id})", soft_wrap=True)
        if entry.detected_at is not None:
            self.console.print(f"  detected: {entry.detected_at:%Y-%m-%d %H:%M:%S} UTC")
        for resource in entry.resources:
            self.console.print(f"  {shown(resource.kind)}: {shown(resource.path)}", soft_wrap=True)
            if resource.size is not None:
                self.console.print(f"    size:   {resource.size}")
            if resource.resource_id is None:
                continue
            data = resources.get(resource.resource_id)
            if data is None:
                self.console.print(f"    data:   {resource.resource_data_path} (not given)")
                continue
            described.add(resource.resource_id)
            decoded = self._decode(data) if out is None else self._write(data, out)
            if decoded is not None:
                self.console.print(f"    sha256: {decoded.sha256}")

    def _resource(self, file: Path, out: Path | None) -> None:
        self.console.print(f"[bold]{shown(str(file))}[/]", soft_wrap=True)
        if out is None:
            decoded = self._decode(file)
        else:
            decoded = self._write(file, out)
        if decoded is None:
            return
        self.console.print(f"  size:     {decoded.size}")
        self.console.print(f"  sha256:   {decoded.sha256}")
        for name in decoded.info.alternate_streams:
            self.console.print(f"  stream:   {shown(name)}", soft_wrap=True)
        if decoded.info.unlisted_streams:
            self.console.print(f"  streams:  {decoded.info.unlisted_streams} more, not listed")

    def _decode(self, file: Path) -> Decoded | None:
        try:
            return decode_file(file, self.max_payload_bytes)
        except (QuarantineFormatError, OSError) as exc:
            self._damaged(file, exc)
            return None

    def _write(self, file: Path, out: Path) -> Decoded | None:
        """The payload to --out (a new file: never overwrites), removed again if decoding fails."""
        try:
            with out.open("xb") as sink:
                decoded = decode_file(file, self.max_payload_bytes, sink)
        except FileExistsError:
            self.errors.print(f"[red]error:[/] {shown(str(out))} exists; not overwritten", soft_wrap=True)
            self.damaged += 1
            return None
        except (QuarantineFormatError, OSError) as exc:
            out.unlink(missing_ok=True)
            self._damaged(file, exc)
            return None
        self.console.print(f"  written:  {shown(str(out))} (the payload: malware, handle with care)", soft_wrap=True)
        return decoded
