"""Crafted quarantine files: what someone who can write to an endpoint's Quarantine folder (a
local admin, malware running as SYSTEM) could plant there to stall or exhaust a decoder.

Built from the layout alone with this package's own encoder (``quarantine.py``), independently
of the product's decoder, so that the tests and ``bench/quarantine_decode`` feed the product
what an attacker could write rather than what the product expects. A scenario can plant the
Entries layouts in a machine's quarantine (``planted_entries``). Each Entries layout is
padded to exactly ``size`` bytes (trailing bytes after the resources are allowed); the
ResourceData layouts are produced chunk by chunk, as GetFile would stream them.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterator

from joedefender_emulators.mde.quarantine import SECURITY_DESCRIPTOR, encrypted, entries_file, stream_header

ENTRIES_HEADER = 0x3C
THREAT_NAME = b"Hostile:Win32/Crafted"
_FILETIME = 133_800_000_000_000_000
_CHUNK = 1 << 20
_SPARSE = 8  # FILE_ATTRIBUTE_SPARSE_FILE on the DATA stream's header


def _section1(threat_name: bytes = THREAT_NAME) -> bytes:
    entry = uuid.UUID("80000bad-0000-0000-0000-00000000c0de")
    return entry.bytes_le + bytes(16) + struct.pack("<QQI", _FILETIME, 0x80000BAD, 1) + threat_name + b"\0"


def _padded(section1: bytes, section2: bytes, size: int | None) -> bytes:
    """The Entries file, section 2 padded with zeros so the whole file has ``size`` bytes."""
    if size is not None:
        room = size - ENTRIES_HEADER - len(section1)
        if len(section2) > room:
            raise ValueError(f"the layout needs {len(section2) - room} bytes more than {size}")
        section2 += bytes(room - len(section2))
    return entries_file(section1, section2)


def _room(size: int) -> int:
    return size - ENTRIES_HEADER - len(_section1())


def _path(units: int, *, terminated: bool = True, fill: str = "A") -> bytes:
    text = "\\\\?\\C:\\" + fill * max(0, units - 7)
    return text[:units].encode("utf-16-le") + (b"\0\0" if terminated else b"")


# "A" then U+0100 is 41 00 00 01: two NUL bytes across a unit boundary, all along the path.
ODD_NULS = "A\u0100"


def _table(offsets: list[int]) -> bytes:
    return struct.pack(f"<I{len(offsets)}I", len(offsets), *offsets)


def shared_path(count: int, path_units: int, size: int | None = None, fill: str = "A") -> bytes:
    """The review's layout: ``count`` resources whose offsets all point at one path of
    ``path_units`` characters, so a naive parser reads (and copies) it ``count`` times."""
    at = 4 + 4 * count
    return _padded(_section1(), _table([at] * count) + _path(path_units, fill=fill) + b"\0\0file\0", size)


def staggered_path(count: int, path_units: int, size: int) -> bytes:
    """``count`` offsets into one path, two bytes apart: each resource is a different suffix
    of it, so remembering what was already read does not help."""
    at = 4 + 4 * count
    return _padded(_section1(), _table([at + 2 * k for k in range(count)]) + _path(path_units), size)


def unterminated_path(count: int, size: int) -> bytes:
    """``count`` resources at one path that never ends: it runs to the end of the file."""
    at = 4 + 4 * count
    units = (_room(size) - at) // 2
    return _padded(_section1(), _table([at] * count) + _path(units, terminated=False), size)


def field_flood(count: int, size: int) -> bytes:
    """``count`` resources, each announcing 65,535 empty fields that fill the file."""
    at = 4 + 4 * count
    body = _path(8) + struct.pack("<H", 0xFFFF) + b"file\0"
    fields = b"".join(struct.pack("<HH", 0, 0x3000 | (n % 0xFFF)) for n in range((_room(size) - at - 32) // 4))
    return _padded(_section1(), _table([at] * count) + body + bytes(-(at + len(body)) % 4) + fields, size)


def endless_kind(count: int, size: int) -> bytes:
    """``count`` resources whose type word never ends."""
    at = 4 + 4 * count
    body = _path(8) + struct.pack("<H", 1) + b"f" * (_room(size) - at - 20)
    return _padded(_section1(), _table([at] * count) + body, size)


def long_threat_name(size: int) -> bytes:
    """A threat name that fills the file (section 2 holds no resource)."""
    name = b"T" * (size - ENTRIES_HEADER - len(_section1(b"")) - 4 - 1)
    return _padded(_section1(name), struct.pack("<I", 0), size)


def offsets_past_the_end(count: int, size: int) -> bytes:
    """``count`` resources whose offsets lie beyond the section."""
    return _padded(_section1(), _table([0xFFFFFFF0 - k for k in range(count)]), size)


def well_formed(count: int, fields: int, size: int) -> bytes:
    """``count`` resources one after the other, each with ``fields`` fields and a path as long
    as the room allows: what Defender could write, only as large as a file may be."""
    at = 4 + 4 * count
    per_resource = (_room(size) - at) // count
    fixed = 2 + 5 + 3 + 16 + fields * 8 + 4  # field count, type, alignment, the 20-byte id, the rest
    units = max(1, min(32_767, (per_resource - fixed - 2) // 2))
    offsets: list[int] = []
    bodies = bytearray()
    for n in range(count):
        offsets.append(at + len(bodies))
        bodies += _path(units) + struct.pack("<H", fields) + b"file\0"
        for k in range(fields):
            bodies += bytes(-(at + len(bodies)) % 4)
            value = bytes(20) if k == 0 else struct.pack("<I", n)
            bodies += struct.pack("<HH", len(value), (4 << 12 | 0x02) if k == 0 else (3 << 12 | 0x0A)) + value
    return _padded(_section1(), _table(offsets) + bytes(bodies), size)


def hostile_entries(size: int = 1 << 20, count: int | None = None) -> dict[str, bytes]:
    """Every hostile Entries layout above at ``size`` bytes, with ``count`` resources (None: as
    many as the file can hold)."""
    legal = 32_767
    room = _room(size)

    def most(per_resource: int, fixed: int = 0) -> int:
        return count if count is not None else (room - fixed) // per_resource

    overlong = most(8)
    return {
        "shared path (legal length)": shared_path(most(4, 2 * legal + 16), legal, size),
        "shared path (odd NULs)": shared_path(most(4, 2 * legal + 16), legal, size, ODD_NULS),
        "shared path (overlong)": shared_path(overlong, (room - 4 * overlong - 16) // 2, size),
        "staggered path": staggered_path(most(4, 2 * legal + 16), legal, size),
        "unterminated path": unterminated_path(most(8), size),
        "field flood": field_flood(count or 1024, size),
        "endless kind": endless_kind(most(8), size),
        "long threat name": long_threat_name(size),
        "offsets past the end": offsets_past_the_end(most(4, 4), size),
    }


# -- ResourceData ----------------------------------------------------------------------------------


def sparse_gap(offset: int) -> Iterator[bytes]:
    """A few dozen bytes whose one sparse block claims ``offset``: a decoder that fills the gap
    at once allocates it whole."""
    plain = stream_header(3, 2, len(SECURITY_DESCRIPTOR)) + SECURITY_DESCRIPTOR + stream_header(1, _SPARSE, 0)
    plain += stream_header(9, 0, 8 + 1) + struct.pack("<q", offset) + b"x"
    return encrypted([plain])


def sparse_ladder(count: int, step: int) -> Iterator[bytes]:
    """``count`` sparse blocks of one byte, ``step`` bytes apart."""

    def plain() -> Iterator[bytes]:
        yield stream_header(1, _SPARSE, 0)
        block = bytearray()
        for n in range(count):
            block += stream_header(9, 0, 8 + 1) + struct.pack("<q", n * step) + b"x"
            if len(block) >= _CHUNK:
                yield bytes(block)
                block.clear()
        yield bytes(block)

    return encrypted(plain())


def stream_flood(count: int, name_units: int) -> Iterator[bytes]:
    """A one-byte payload followed by ``count`` empty alternate streams, each with a name of
    ``name_units`` characters: a decoder that keeps every header keeps them all."""
    name = ":" + "s" * max(0, name_units - 7) + ":$DATA"

    def plain() -> Iterator[bytes]:
        yield stream_header(3, 2, len(SECURITY_DESCRIPTOR)) + SECURITY_DESCRIPTOR + stream_header(1, 0, 1) + b"x"
        header = stream_header(4, 0, 0, name[:name_units])
        per_chunk = max(1, _CHUNK // len(header))
        for start in range(0, count, per_chunk):
            yield header * min(per_chunk, count - start)

    return encrypted(plain())


def hostile_resource_data(stream_count: int = 60_000) -> dict[str, Callable[[], Iterator[bytes]]]:
    """The hostile ResourceData layouts above, each as a function that streams it anew."""
    return {
        "sparse block at 256 MiB": lambda: sparse_gap(1 << 28),
        "sparse block at 2**62": lambda: sparse_gap(1 << 62),
        "sparse ladder": lambda: sparse_ladder(100_000, 1 << 20),
        "stream flood": lambda: stream_flood(stream_count, 512),
    }
