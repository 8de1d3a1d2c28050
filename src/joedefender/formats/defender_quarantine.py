"""Defender's quarantine, decoded on the connector's side (../shared/reference/defender-quarantine.md).

The read-only locate strategy fetches the *encrypted* ResourceData files with GetFile and decodes
them here, so nothing is compiled, restored, decoded or written on the endpoint. Every byte of
these files is attacker-influenced: the decoder walks the BackupRead stream headers instead of
trusting fixed offsets, never allocates by a length field it has not bounded, streams the
payload out chunk by chunk (constant memory), and turns anything malformed or truncated into a
`QuarantineFormatError`.

Written here because the decoders that exist are GPL or AGPL. RC4 runs in libcrypto through
ctypes when the system has it (hundreds of MB/s; `cryptography`'s ARC4 takes keys of at most
32 bytes, Defender's is 256), else in pure Python (a few MB/s).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache

from joedefender.domain.errors import QuarantineFormatError

# Defender's fixed RC4 key (public: in mpengine.dll and every open-source decoder).
RC4_KEY = bytes.fromhex(
    "1E87781B8DBAA844CE69702C0C78B786A3F623B738F5EDF9AF83530FB3FC54FAA21EB9CF1331FD0F0DA954F687CB9E18"
    "279697900E53FB317C9CBCE48E23D05371ECC15951B8F3649D7CA33ED68DC9047E82C9BAAD9799D0D458CB847CA9FFBE"
    "3C8A775233557DDE13A8B14087CC1BC8F10F6ECDD083A959CFF84A9D1D50755E3E191818AF23E2293558766D2C07E257"
    "12B2CA0B535ED8F6C56CE73D24BDD0291771861A54B4C285A9A3DB7ACA6D224AEACD621DB9F2A22ED1E9E11D75BED7DC"
    "0ECB0A8E68A2FF1263408DC808DFFD164B116774CD0B9B8D05411ED6262E429BA495676B8398DB2F35D3C1B9CED52636"
    "F2765E1A95CB7CA4C3DDABDDBFF38253"
)

STREAM_DATA = 1
STREAM_SECURITY_DATA = 3
STREAM_ALTERNATE_DATA = 4
STREAM_SPARSE_BLOCK = 9
_MAX_STREAM_ID = 11
_STREAM_HEADER = struct.Struct("<IIQI")  # WIN32_STREAM_ID without its name
_MAX_NAME_BYTES = 1024  # an NTFS stream name is at most 255 UTF-16 units, plus ":" and ":$DATA"
_SPARSE_OFFSET = 8
_ZEROS = bytes(1 << 16)

MAX_ENTRIES_BYTES = 1 << 20  # real Entries files are a few hundred bytes
_ENTRIES_MAGIC = b"\xdb\xe8\xc5\x01"
_ENTRIES_FOOTER = b"\xdb\xe8\xc5\x02"
_ENTRIES_HEADER = 0x3C
_SECTION1_FIXED = 0x34
_FIELD_RESOURCE_ID = 0x02
_FIELD_PHYSICAL_PATH = 0x0C
_FIELD_FILE_SIZE = 0x12
_FIELD_WSTRING, _FIELD_QWORD = 2, 6
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


# -- RC4 -------------------------------------------------------------------------------------------


@cache
def _libcrypto() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.RC4_set_key.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
        lib.RC4_set_key.restype = None
        lib.RC4.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
        lib.RC4.restype = None
    except (OSError, AttributeError):  # no libcrypto, or one built without RC4
        return None
    return lib


class Rc4:
    """RC4 (standard KSA and PRGA) over a stream that arrives in chunks."""

    def __init__(self, key: bytes = RC4_KEY, *, native: bool = True) -> None:
        self._lib = _libcrypto() if native else None
        if self._lib is not None:
            # RC4_KEY is two ints and 256 ints; twice that leaves room for any RC4_INT width.
            self._state = ctypes.create_string_buffer(2 * (2 + 256) * 8)
            self._lib.RC4_set_key(self._state, len(key), key)
            return
        s = list(range(256))
        j = 0
        for i in range(256):
            j = (j + s[i] + key[i % len(key)]) & 0xFF
            s[i], s[j] = s[j], s[i]
        self._s, self._i, self._j = s, 0, 0

    @property
    def native(self) -> bool:
        return self._lib is not None

    def apply(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self._lib is not None:
            out = ctypes.create_string_buffer(len(data))
            self._lib.RC4(self._state, len(data), bytes(data), out)
            return out.raw
        s, i, j = self._s, self._i, self._j
        out_bytes = bytearray(data)
        for n in range(len(out_bytes)):
            i = (i + 1) & 0xFF
            si = s[i]
            j = (j + si) & 0xFF
            sj = s[j]
            s[i], s[j] = sj, si
            out_bytes[n] ^= s[(si + sj) & 0xFF]
        self._i, self._j = i, j
        return bytes(out_bytes)


def rc4(data: bytes) -> bytes:
    """One RC4 pass from a fresh state with Defender's key (each Entries part restarts it)."""
    return Rc4().apply(data)


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
    """What a ResourceData file held: its streams, and the payload's size."""

    streams: list[StreamInfo] = field(default_factory=list)
    payload_size: int = 0

    @property
    def alternate_streams(self) -> list[str]:
        return [s.name for s in self.streams if s.stream_id == STREAM_ALTERNATE_DATA]


class ResourceDecoder:
    """Push decoder of one ResourceData file: ``feed`` ciphertext chunks and get the payload's
    bytes back (the DATA stream, with sparse blocks placed at their offsets), then ``finish``.

    Only the 20-byte header and a bounded name are ever buffered; stream bodies pass through or
    are skipped by counting, whatever size their header claims.
    """

    def __init__(self, max_payload_bytes: int | None = None) -> None:
        self._rc4 = Rc4()
        self._max_payload = max_payload_bytes
        self._info = ResourceInfo()
        self._pending = b""  # header or name bytes still being assembled
        self._header: tuple[int, int, int, int] | None = None
        self._body_left = 0  # bytes of the current stream's body still to come
        self._body_id = 0
        self._sparse_offset = b""
        self._offset = 0  # bytes consumed, for error messages
        self._saw_data = False

    def feed(self, ciphertext: bytes) -> bytes:
        plain = self._rc4.apply(ciphertext)
        out: list[bytes] = []
        view = memoryview(plain)
        while view:
            if self._body_left > 0:
                take = min(self._body_left, len(view))
                self._body(bytes(view[:take]), out)
                self._body_left -= take
                self._offset += take
                view = view[take:]
                continue
            view = self._assemble_header(view)
        return b"".join(out)

    def _assemble_header(self, view: memoryview) -> memoryview:
        if self._header is None:
            need = _STREAM_HEADER.size - len(self._pending)
            self._pending += bytes(view[:need])
            view = view[need:]
            if len(self._pending) < _STREAM_HEADER.size:
                return view
            stream_id, attributes, size, name_size = _STREAM_HEADER.unpack(self._pending)
            at = self._offset
            if not 1 <= stream_id <= _MAX_STREAM_ID:
                raise QuarantineFormatError(f"not a quarantine file: unknown stream id {stream_id} at offset {at}")
            if name_size > _MAX_NAME_BYTES or name_size % 2:
                raise QuarantineFormatError(f"stream name of {name_size} bytes at offset {at}")
            self._header = (stream_id, attributes, size, name_size)
            self._pending = b""
            self._offset += _STREAM_HEADER.size
        stream_id, attributes, size, name_size = self._header
        need = name_size - len(self._pending)
        self._pending += bytes(view[:need])
        view = view[need:]
        if len(self._pending) < name_size:
            return view
        self._offset += name_size
        name = self._pending.decode("utf-16-le", errors="replace")
        self._pending, self._header = b"", None
        self._info.streams.append(StreamInfo(stream_id, attributes, name, size))
        self._start_body(stream_id, size)
        return view

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

    def _body(self, data: bytes, out: list[bytes]) -> None:
        if self._body_id == STREAM_SPARSE_BLOCK and len(self._sparse_offset) < _SPARSE_OFFSET:
            need = _SPARSE_OFFSET - len(self._sparse_offset)
            self._sparse_offset += data[:need]
            data = data[need:]
            if len(self._sparse_offset) == _SPARSE_OFFSET:
                self._seek(int.from_bytes(self._sparse_offset, "little", signed=True), out)
        if self._body_id in (STREAM_DATA, STREAM_SPARSE_BLOCK) and data:
            self._emit(data, out)

    def _seek(self, position: int, out: list[bytes]) -> None:
        """Sparse blocks come in ascending order: the gap before one reads as zeros."""
        if position < self._info.payload_size:
            raise QuarantineFormatError(f"a sparse block goes back to offset {position}")
        gap = position - self._info.payload_size
        self._check_room(gap)
        while gap > 0:
            zeros = _ZEROS[: min(gap, len(_ZEROS))]
            out.append(zeros)
            self._info.payload_size += len(zeros)
            gap -= len(zeros)

    def _emit(self, data: bytes, out: list[bytes]) -> None:
        self._check_room(len(data))
        out.append(data)
        self._info.payload_size += len(data)

    def _check_room(self, more: int) -> None:
        if self._max_payload is not None and self._info.payload_size + more > self._max_payload:
            raise QuarantineFormatError(f"the payload exceeds the {self._max_payload} byte limit")

    def finish(self) -> ResourceInfo:
        """Raise unless the blob ended exactly after a complete stream that held the payload."""
        if self._body_left or self._pending or self._header is not None:
            raise QuarantineFormatError(f"truncated: the file ends inside a stream at offset {self._offset}")
        if not self._info.streams:
            raise QuarantineFormatError("empty: no stream at all")
        if not self._saw_data:
            raise QuarantineFormatError("no DATA stream: nothing was quarantined in this file")
        return self._info


def decode_resource(chunks: Iterable[bytes], max_payload_bytes: int | None = None) -> Iterator[bytes]:
    """The payload of a ResourceData file given as ciphertext chunks, chunk by chunk; raises
    QuarantineFormatError (after the last chunk at the latest) if the file is damaged."""
    decoder = ResourceDecoder(max_payload_bytes)
    for chunk in chunks:
        plain = decoder.feed(chunk)
        if plain:
            yield plain
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


class _Cursor:
    """Bounds-checked reads over one decrypted section."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.what = data, what

    def take(self, at: int, size: int) -> bytes:
        if at < 0 or size < 0 or at + size > len(self.data):
            raise QuarantineFormatError(f"{self.what}: {size} bytes at offset {at} run past its end")
        return self.data[at : at + size]

    def dword(self, at: int) -> int:
        return int.from_bytes(self.take(at, 4), "little")

    def word(self, at: int) -> int:
        return int.from_bytes(self.take(at, 2), "little")

    def c_string(self, at: int) -> tuple[str, int]:
        end = self.data.find(b"\0", at)
        if at >= len(self.data) or end < 0:
            raise QuarantineFormatError(f"{self.what}: unterminated string at offset {at}")
        return self.data[at:end].decode("utf-8", errors="replace"), end + 1

    def w_string(self, at: int) -> tuple[str, int]:
        end = at
        while True:
            if self.take(end, 2) == b"\0\0":
                return self.data[at:end].decode("utf-16-le", errors="replace"), end + 2
            end += 2


def parse_entries(data: bytes) -> QuarantineEntry:
    """Parse one Entries file; raises QuarantineFormatError if it is not one or is damaged."""
    if len(data) > MAX_ENTRIES_BYTES:
        raise QuarantineFormatError(f"{len(data)} bytes is too large for an Entries file")
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
    section1 = _Cursor(rc4(data[_ENTRIES_HEADER : _ENTRIES_HEADER + size1]), "section 1")
    section2 = _Cursor(rc4(data[_ENTRIES_HEADER + size1 :]), "section 2")
    entry_id = str(uuid.UUID(bytes_le=section1.take(0, 16))).upper()
    filetime, threat_id = struct.unpack("<QQ", section1.take(0x20, 16))
    threat_name, _ = section1.c_string(_SECTION1_FIXED)
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


def _resources(section: _Cursor) -> Iterator[QuarantineResource]:
    count = section.dword(0)
    if count > len(section.data) // 4:
        raise QuarantineFormatError(f"section 2 announces {count} resources in {len(section.data)} bytes")
    for n in range(count):
        yield _resource(section, section.dword(4 + 4 * n))


def _resource(section: _Cursor, at: int) -> QuarantineResource:
    path, at = section.w_string(at)
    field_count = section.word(at)
    kind, at = section.c_string(at + 2)
    resource_id: str | None = None
    size: int | None = None
    for _ in range(field_count):
        at = (at + 3) & ~3
        length, tag = section.word(at), section.word(at + 2)
        value = section.take(at + 4, length)
        at += 4 + length
        identifier, kind_of_field = tag & 0x0FFF, tag >> 12
        if identifier == _FIELD_RESOURCE_ID and len(value) == 20:
            resource_id = value.hex().upper()
        elif identifier == _FIELD_FILE_SIZE and kind_of_field == _FIELD_QWORD and len(value) == 8:
            size = int.from_bytes(value, "little")
        elif identifier == _FIELD_PHYSICAL_PATH and kind_of_field == _FIELD_WSTRING and not path:
            path = value.decode("utf-16-le", errors="replace").rstrip("\0")
    if path.startswith("\\\\?\\"):
        path = path[4:]
    return QuarantineResource(path=path, kind=kind, resource_id=resource_id, size=size)
