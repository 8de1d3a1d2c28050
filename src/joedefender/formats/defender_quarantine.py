"""Defender's quarantine, decoded on the connector's side (../shared/reference/defender-quarantine.md).

The read-only locate strategy fetches the *encrypted* ResourceData files with GetFile and decodes
them here, so nothing is compiled, restored, decoded or written on the endpoint. Every byte of
these files is attacker-influenced (whoever can write to one endpoint's Quarantine folder: a local
admin, malware running as SYSTEM), so both readers are linear in their input and bounded in
memory whatever the length fields, offsets and counts claim:

- ResourceData: the decoder walks the BackupRead stream headers instead of trusting fixed
  offsets, skips stream bodies by counting, buffers only a header and a bounded name, produces
  the zeros of a sparse gap lazily in bounded pieces, stops at a payload limit and at
  MAX_STREAMS headers, and keeps at most MAX_LISTED_STREAMS stream descriptions.
- Entries: every read is counted against the section's size (a real file's resources do not
  overlap, so a parse that reads more was pointed at the same bytes twice), a string is looked
  for only within its longest legal length, and resources and fields are capped by what
  Defender writes.

Anything malformed, truncated or over a limit is a `QuarantineFormatError`. Written here
because the decoders that exist are GPL or AGPL.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from joedefender.domain.errors import QuarantineFormatError
from joedefender.formats.defender_rc4 import RC4_KEY, Rc4, rc4

__all__ = [
    "MAX_ENTRIES_BYTES",
    "MAX_PAYLOAD_BYTES",
    "RC4_KEY",
    "PayloadLimitError",
    "QuarantineEntry",
    "QuarantineResource",
    "Rc4",
    "ResourceDecoder",
    "ResourceInfo",
    "StreamInfo",
    "decode_resource",
    "parse_entries",
    "rc4",
]

STREAM_DATA = 1
STREAM_SECURITY_DATA = 3
STREAM_ALTERNATE_DATA = 4
STREAM_SPARSE_BLOCK = 9
_MAX_STREAM_ID = 11
_STREAM_HEADER = struct.Struct("<IIQI")  # WIN32_STREAM_ID without its name
_MAX_NAME_BYTES = 1024  # an NTFS stream name is at most 255 UTF-16 units, plus ":" and ":$DATA"
_SPARSE_OFFSET = 8
# A file's BackupRead output is its security descriptor, its data, a few alternate streams, or
# one sparse block per allocated range. Each header costs a few microseconds of Python, so a
# flood of empty headers would cost minutes per GiB; no quarantined sample has this many.
MAX_STREAMS = 1 << 16
# Stream descriptions kept for the report (the others are only counted): a file has a handful.
MAX_LISTED_STREAMS = 64
# The payload limit when the caller gives none: GetFile fetches at most 3 GB (mde-api.md), and a
# sparse block may claim any offset, so a 36-byte file could otherwise expand without end.
MAX_PAYLOAD_BYTES = 3 * 1024**3
# The zeros of a sparse gap come out in pieces of this size, produced as they are consumed.
_ZEROS = bytes(1 << 16)

MAX_ENTRIES_BYTES = 1 << 20  # real Entries files are a few hundred bytes
# One entry lists what one detection took away: a file or a few, registry keys, run keys,
# services. With MAX_FIELDS this bounds the parse's loop (a few ms of Python at most).
MAX_RESOURCES = 128
# Defender's field identifiers run from 0x02 to 0x12 (about ten are used): a resource with more
# fields than this repeats them, which Defender does not write.
MAX_FIELDS = 32
# The longest path Windows knows (the \\?\ form), in UTF-16 units.
MAX_PATH_UNITS = 32_767
# Threat names are family names of well under 200 characters (Trojan:Win32/Wacatac.B!ml).
MAX_THREAT_NAME_BYTES = 1024
# Resource kinds are short words: file, regkey, runkey, internalbehavior.
MAX_KIND_BYTES = 64
_ENTRIES_MAGIC = b"\xdb\xe8\xc5\x01"
_ENTRIES_FOOTER = b"\xdb\xe8\xc5\x02"
_ENTRIES_HEADER = 0x3C
_SECTION1_FIXED = 0x34
_FIELD_RESOURCE_ID = 0x02
_FIELD_PHYSICAL_PATH = 0x0C
_FIELD_FILE_SIZE = 0x12
_FIELD_WSTRING, _FIELD_QWORD = 2, 6
_FIELD_HEADER = struct.Struct("<HH")  # a resource field's size, then its identifier and type
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
# UTF-16 code units up to the first NUL unit: the regular expression engine walks them in C.
_WIDE_STRING = re.compile(rb"(?:..)*?\x00\x00", re.DOTALL)


class PayloadLimitError(QuarantineFormatError):
    """The payload passes the decoder's limit: a larger file, or a sparse block far out."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the payload exceeds the limit of {limit} bytes")
        self.limit = limit


# -- ResourceData: RC4 over the output of BackupRead -----------------------------------------------


@dataclass(frozen=True)
class StreamInfo:
    """One WIN32_STREAM_ID of the decrypted blob (its data is not kept)."""

    stream_id: int
    attributes: int
    name: str
    size: int


@dataclass
class ResourceInfo:
    """What a ResourceData file held: its streams (the first MAX_LISTED_STREAMS, and how many
    more there were), and the payload's size."""

    streams: list[StreamInfo] = field(default_factory=list)
    payload_size: int = 0
    unlisted_streams: int = 0

    @property
    def alternate_streams(self) -> list[str]:
        return [s.name for s in self.streams if s.stream_id == STREAM_ALTERNATE_DATA]


class ResourceDecoder:
    """Push decoder of one ResourceData file: ``feed`` ciphertext chunks and iterate over the
    payload's bytes it gives back (the DATA stream, with sparse blocks placed at their offsets),
    then ``finish``.

    Only the 20-byte header and a bounded name are ever buffered; stream bodies pass through or
    are skipped by counting, whatever size their header claims. Each piece given back is at most
    as large as the chunk fed or 64 KiB (the zeros of a sparse gap).
    """

    def __init__(self, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> None:
        self._rc4 = Rc4()
        self._max_payload = max_payload_bytes
        self._info = ResourceInfo()
        self._pending = b""  # header or name bytes still being assembled
        self._header: tuple[int, int, int, int] | None = None
        self._headers = 0
        self._body_left = 0  # bytes of the current stream's body still to come
        self._body_id = 0
        self._sparse_offset = b""
        self._offset = 0  # bytes consumed, for error messages
        self._saw_data = False

    def feed(self, ciphertext: bytes) -> Iterator[bytes]:
        """The payload bytes this chunk carries; iterate to the end before the next ``feed``."""
        view = memoryview(self._rc4.apply(ciphertext))
        while view:
            if self._body_left > 0:
                take = min(self._body_left, len(view))
                body = view[:take]
                self._body_left -= take
                self._offset += take
                view = view[take:]
                yield from self._body(body)
                continue
            view = self._assemble_header(view)

    def _assemble_header(self, view: memoryview) -> memoryview:
        if self._header is None:
            need = _STREAM_HEADER.size - len(self._pending)
            self._pending += bytes(view[:need])
            view = view[need:]
            if len(self._pending) < _STREAM_HEADER.size:
                return view
            self._header = self._checked_header(_STREAM_HEADER.unpack(self._pending))
            self._pending = b""
            self._offset += _STREAM_HEADER.size
        stream_id, attributes, size, name_size = self._header
        need = name_size - len(self._pending)
        self._pending += bytes(view[:need])
        view = view[need:]
        if len(self._pending) < name_size:
            return view
        self._offset += name_size
        if len(self._info.streams) < MAX_LISTED_STREAMS:
            name = self._pending.decode("utf-16-le", errors="replace")
            self._info.streams.append(StreamInfo(stream_id, attributes, name, size))
        else:
            self._info.unlisted_streams += 1
        self._pending, self._header = b"", None
        self._start_body(stream_id, size)
        return view

    def _checked_header(self, header: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        stream_id, _, _, name_size = header
        at = self._offset
        if not 1 <= stream_id <= _MAX_STREAM_ID:
            raise QuarantineFormatError(f"not a quarantine file: unknown stream id {stream_id} at offset {at}")
        if name_size > _MAX_NAME_BYTES or name_size % 2:
            raise QuarantineFormatError(f"stream name of {name_size} bytes at offset {at}")
        self._headers += 1
        if self._headers > MAX_STREAMS:
            raise QuarantineFormatError(f"more than {MAX_STREAMS} streams (at offset {at}): not a quarantined file")
        return header

    def _start_body(self, stream_id: int, size: int) -> None:
        if stream_id == STREAM_DATA:
            if self._saw_data:
                raise QuarantineFormatError(f"a second DATA stream at offset {self._offset}")
            self._saw_data = True
        if stream_id == STREAM_SPARSE_BLOCK:
            if size < _SPARSE_OFFSET:
                raise QuarantineFormatError(f"a sparse block of {size} bytes at offset {self._offset}")
            self._saw_data = True
        self._body_id, self._body_left, self._sparse_offset = stream_id, size, b""

    def _body(self, data: memoryview) -> Iterator[bytes]:
        if self._body_id == STREAM_SPARSE_BLOCK and len(self._sparse_offset) < _SPARSE_OFFSET:
            need = _SPARSE_OFFSET - len(self._sparse_offset)
            self._sparse_offset += bytes(data[:need])
            data = data[need:]
            if len(self._sparse_offset) == _SPARSE_OFFSET:
                yield from self._seek(int.from_bytes(self._sparse_offset, "little", signed=True))
        if self._body_id in (STREAM_DATA, STREAM_SPARSE_BLOCK) and data:
            self._check_room(len(data))
            self._info.payload_size += len(data)
            yield bytes(data)

    def _seek(self, position: int) -> Iterator[bytes]:
        """Sparse blocks come in ascending order: the gap before one reads as zeros, produced
        piece by piece as the caller consumes them (never the whole gap at once)."""
        if position < self._info.payload_size:
            raise QuarantineFormatError(f"a sparse block goes back to offset {position}")
        self._check_room(position - self._info.payload_size)
        while self._info.payload_size < position:
            zeros = _ZEROS[: min(position - self._info.payload_size, len(_ZEROS))]
            self._info.payload_size += len(zeros)
            yield zeros

    def _check_room(self, more: int) -> None:
        if self._info.payload_size + more > self._max_payload:
            raise PayloadLimitError(self._max_payload)

    def finish(self) -> ResourceInfo:
        """Raise unless the blob ended exactly after a complete stream that held the payload."""
        if self._body_left or self._pending or self._header is not None:
            raise QuarantineFormatError(f"truncated: the file ends inside a stream at offset {self._offset}")
        if not self._info.streams:
            raise QuarantineFormatError("empty: no stream at all")
        if not self._saw_data:
            raise QuarantineFormatError("no DATA stream: nothing was quarantined in this file")
        return self._info


def decode_resource(chunks: Iterable[bytes], max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> Iterator[bytes]:
    """The payload of a ResourceData file given as ciphertext chunks, piece by piece; raises
    QuarantineFormatError (after the last chunk at the latest) if the file is damaged."""
    decoder = ResourceDecoder(max_payload_bytes)
    for chunk in chunks:
        yield from decoder.feed(chunk)
    decoder.finish()


# -- Entries: three separately encrypted parts -----------------------------------------------------


@dataclass(frozen=True)
class QuarantineResource:
    """One thing an entry took away; only `file` resources have a ResourceData file."""

    path: str
    kind: str
    resource_id: str | None = None  # 40 uppercase hex: ResourceData\\ID[0:2]\\ID
    size: int | None = None

    @property
    def resource_data_path(self) -> str | None:
        """Where the encrypted file lies, relative to the Quarantine folder."""
        if self.resource_id is None:
            return None
        return f"ResourceData\\{self.resource_id[:2]}\\{self.resource_id}"


@dataclass(frozen=True)
class QuarantineEntry:
    """One Entries file: one detection."""

    entry_id: str
    threat_id: int
    threat_name: str
    detected_at: datetime | None
    resources: tuple[QuarantineResource, ...]


class _Section:
    """Bounds-checked reads over one decrypted section, each counted against its size: a real
    file's parts do not overlap, so reading more bytes than the section holds means offsets
    point at the same bytes again, and the parse stops (linear, whatever the offsets say)."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.what = data, what
        self.unread = len(data)

    def _read(self, at: int, size: int) -> None:
        if at < 0 or size < 0 or at + size > len(self.data):
            raise QuarantineFormatError(f"{self.what}: {size} bytes at offset {at} run past its end")
        self.unread -= size
        if self.unread < 0:
            raise QuarantineFormatError(f"{self.what}: its parts overlap (more bytes read than it holds)")

    def take(self, at: int, size: int) -> bytes:
        self._read(at, size)
        return self.data[at : at + size]

    def field(self, at: int) -> tuple[int, int]:
        """The size and tag of the resource field at ``at``, its value counted as read too (one
        call per field: the loop over fields is the parse's hottest)."""
        if at + _FIELD_HEADER.size > len(self.data):
            raise QuarantineFormatError(f"{self.what}: a field at offset {at} runs past its end")
        size, tag = _FIELD_HEADER.unpack_from(self.data, at)
        self._read(at, _FIELD_HEADER.size + size)
        return size, tag

    def number(self, at: int, size: int) -> int:
        return int.from_bytes(self.take(at, size), "little")

    def c_string(self, at: int, max_bytes: int) -> tuple[str, int]:
        """A NUL-terminated UTF-8 string of at most ``max_bytes``, and the offset after it."""
        end = self.data.find(b"\0", at, at + max_bytes + 1)
        if at >= len(self.data) or end < 0:
            raise QuarantineFormatError(f"{self.what}: no string of at most {max_bytes} bytes at offset {at}")
        return self.take(at, end + 1 - at)[:-1].decode("utf-8", errors="replace"), end + 1

    def w_string(self, at: int, max_units: int) -> tuple[str, int]:
        """A NUL-terminated UTF-16 string of at most ``max_units``, and the offset after it."""
        limit = at + 2 * (max_units + 1)
        # Fast: the first two NUL bytes are the terminator, or (after a character below U+0100)
        # start one byte before it. Anything else is left to the slower, unit by unit search.
        end = self.data.find(b"\0\0", at, limit) + 2
        if end >= 2 and (end - at) % 2 and self.data[end : end + 1] == b"\0" and end < limit:
            end += 1
        if end < 2 or (end - at) % 2:
            found = _WIDE_STRING.match(self.data, at, limit)
            if found is None:
                raise QuarantineFormatError(f"{self.what}: no path of at most {max_units} characters at offset {at}")
            end = found.end()
        return self.take(at, end - at)[:-2].decode("utf-16-le", errors="replace"), end


def parse_entries(data: bytes) -> QuarantineEntry:
    """Parse one Entries file; raises QuarantineFormatError if it is not one or is damaged."""
    if len(data) > MAX_ENTRIES_BYTES:
        raise QuarantineFormatError(f"more than {MAX_ENTRIES_BYTES} bytes: too large for an Entries file")
    if len(data) < _ENTRIES_HEADER:
        raise QuarantineFormatError("too short for an Entries file")
    header = rc4(data[:_ENTRIES_HEADER])
    if header[:4] != _ENTRIES_MAGIC or header[0x38:0x3C] != _ENTRIES_FOOTER:
        raise QuarantineFormatError("not an Entries file: wrong magic")
    size1, size2 = struct.unpack_from("<II", header, 0x28)
    if _ENTRIES_HEADER + size1 + size2 != len(data):
        raise QuarantineFormatError(
            f"the header announces {_ENTRIES_HEADER + size1 + size2} bytes, the file has {len(data)}"
        )
    section1 = _Section(rc4(data[_ENTRIES_HEADER : _ENTRIES_HEADER + size1]), "section 1")
    section2 = _Section(rc4(data[_ENTRIES_HEADER + size1 :]), "section 2")
    entry_id = str(uuid.UUID(bytes_le=section1.take(0, 16))).upper()
    filetime, threat_id = struct.unpack("<QQ", section1.take(0x20, 16))
    threat_name, _ = section1.c_string(_SECTION1_FIXED, MAX_THREAT_NAME_BYTES)
    return QuarantineEntry(
        entry_id=entry_id,
        threat_id=threat_id,
        threat_name=threat_name,
        detected_at=_filetime(filetime),
        resources=tuple(_resources(section2)),
    )


def _filetime(value: int) -> datetime | None:
    try:
        return _FILETIME_EPOCH + timedelta(microseconds=value // 10)
    except OverflowError:
        return None


def _resources(section: _Section) -> Iterator[QuarantineResource]:
    count = section.number(0, 4)
    if count > MAX_RESOURCES:
        raise QuarantineFormatError(f"section 2 announces {count} resources, more than the {MAX_RESOURCES} allowed")
    offsets = [section.number(4 + 4 * n, 4) for n in range(count)]
    for at in offsets:
        yield _resource(section, at)


def _resource(section: _Section, at: int) -> QuarantineResource:
    path, at = section.w_string(at, MAX_PATH_UNITS)
    field_count = section.number(at, 2)
    if field_count > MAX_FIELDS:
        raise QuarantineFormatError(f"a resource with {field_count} fields, more than the {MAX_FIELDS} allowed")
    kind, at = section.c_string(at + 2, MAX_KIND_BYTES)
    resource_id: str | None = None
    size: int | None = None
    for _ in range(field_count):
        at = (at + 3) & ~3
        length, tag = section.field(at)
        value_at, at = at + _FIELD_HEADER.size, at + _FIELD_HEADER.size + length
        identifier, kind_of_field = tag & 0x0FFF, tag >> 12
        if identifier == _FIELD_RESOURCE_ID and length == 20:
            resource_id = section.data[value_at:at].hex().upper()
        elif identifier == _FIELD_FILE_SIZE and kind_of_field == _FIELD_QWORD and length == 8:
            size = int.from_bytes(section.data[value_at:at], "little")
        elif identifier == _FIELD_PHYSICAL_PATH and kind_of_field == _FIELD_WSTRING and not path:
            path = section.data[value_at:at].decode("utf-16-le", errors="replace").rstrip("\0")
    if path.startswith("\\\\?\\"):
        path = path[4:]
    return QuarantineResource(path=path, kind=kind, resource_id=resource_id, size=size)
