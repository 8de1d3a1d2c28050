"""What the read-only locator (``joedefender-locate.ps1``) prints: the quarantine's ResourceData
and Entries files, newest first, and the Entries files' own bytes when they are small.

The connector reads the Entries files to know which ResourceData file holds the evidence. Fetched
by GetFile they would cost an action of their own between the listing and the fetch (a GetFile
needs the path before the action starts, and live response runs a RunScript before any GetFile of
the same action), so the locator prints them in its one line, as hex: the newest first, each at
most ENTRIES_EMBED_EACH bytes, together at most ENTRIES_EMBED_TOTAL (the line stays within
`contract.MAX_SCRIPT_OUTPUT_CHARS`). Real ones are a few hundred bytes, so all 64 it lists fit;
one it could not read whole, or over either bound, is listed without its bytes, and the connector
fetches it by GetFile as before. Whatever the device prints is checked here: hex digits only,
exactly the listed size, within both bounds, or the line is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from joedefender.endpoint.contract import (
    LOCATE_LIMIT,
    MAX_MESSAGE_CHARS,
    ContractError,
    brief,
    check_version,
    entries_root,
    our_line,
    resource_data_root,
)

LocateStatus = Literal["located", "not_found", "error"]
LOCATE_STATUSES: tuple[str, ...] = get_args(LocateStatus)
# $EmbedEach and $EmbedTotal in the script.
ENTRIES_EMBED_EACH = 64 << 10
ENTRIES_EMBED_TOTAL = 256 << 10
_HEX = re.compile(r"[0-9A-Fa-f]*")


@dataclass(frozen=True)
class LocatedResource:
    """A file the locator listed: a ResourceData file (a candidate to GetFile and decode), or an
    Entries file (read here, to know which ResourceData file holds what): `data` holds its bytes
    when the locator printed them."""

    path: str
    size: int
    data: bytes | None = None


@dataclass(frozen=True)
class LocateOutcome:
    """The locate script's one line: the language mode it ran in, the candidate files, and the
    Entries files (none when absent: the locator of before listed none)."""

    status: LocateStatus
    language_mode: str
    resources: tuple[LocatedResource, ...] = ()
    message: str = ""
    entries: tuple[LocatedResource, ...] = ()

    @classmethod
    def from_script_output(cls, script_output: str) -> LocateOutcome:
        doc = our_line(script_output)
        check_version(doc)
        status, mode, message = doc.get("status"), doc.get("languageMode"), doc.get("message") or ""
        if status not in LOCATE_STATUSES:
            raise ContractError(f"unknown status {brief(status)}")
        if not isinstance(mode, str) or not isinstance(message, str):
            raise ContractError("languageMode and message must be strings")
        entries = _listed(doc, "entries", _entries_file, embedded=True)
        if sum(len(e.data or b"") for e in entries) > ENTRIES_EMBED_TOTAL:
            raise ContractError(f"the Entries files printed hold more than {ENTRIES_EMBED_TOTAL} bytes")
        return cls(
            status=status,  # type: ignore[arg-type]  # checked against LOCATE_STATUSES above
            language_mode=mode[:40],
            resources=_listed(doc, "resources", _resource_data),
            message=message[:MAX_MESSAGE_CHARS],
            entries=entries,
        )


def _listed(
    doc: Mapping[str, object], key: str, take: Callable[[str], bool], *, embedded: bool = False
) -> tuple[LocatedResource, ...]:
    """A list of listed files; only the paths `take` accepts are kept (with their printed bytes,
    when `embedded`)."""
    raw = doc.get(key) or []
    if not isinstance(raw, list) or len(raw) > LOCATE_LIMIT:
        raise ContractError(f"{key} must be a list of at most {LOCATE_LIMIT}")
    return tuple(r for r in (_located(item, embedded) for item in raw) if take(r.path))


def _located(item: object, embedded: bool) -> LocatedResource:
    if not isinstance(item, dict):
        raise ContractError("a listed file must be an object")
    path, size = item.get("path"), item.get("size")
    if not isinstance(path, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ContractError("a listed file needs a string path and a non-negative integer size")
    printed = item.get("hex") if embedded else None
    if printed is None:
        return LocatedResource(path=path, size=size)
    if size > ENTRIES_EMBED_EACH or not isinstance(printed, str) or len(printed) != 2 * size:
        raise ContractError(f"an Entries file's hex must be its size exactly, at most {ENTRIES_EMBED_EACH} bytes")
    if _HEX.fullmatch(printed) is None:
        raise ContractError("an Entries file's hex holds a character that is no hex digit")
    return LocatedResource(path=path, size=size, data=bytes.fromhex(printed))


def _under(root: str, path: str) -> list[str]:
    """The parts of `path` below `root` (case-insensitive, as Windows), or none."""
    return path[len(root) + 1 :].split("\\") if path.lower().startswith(root.lower() + "\\") else []


def _resource_data(path: str) -> bool:
    """ResourceData\\XX\\<40 hex> under the quarantine."""
    name = _under(resource_data_root(), path)
    return len(name) == 2 and _RESOURCE_NAME.fullmatch(name[1]) is not None and name[0].upper() == name[1][:2].upper()


def _entries_file(path: str) -> bool:
    """Entries\\{GUID} under the quarantine."""
    name = _under(entries_root(), path)
    return len(name) == 1 and _ENTRIES_NAME.fullmatch(name[0]) is not None


_RESOURCE_NAME = re.compile(r"[0-9A-Fa-f]{40}")
_ENTRIES_NAME = re.compile(r"\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}")
