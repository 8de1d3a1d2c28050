"""The emulated endpoints' Defender quarantine, in the real encrypted layout.

Entries\\{GUID} and ResourceData\\XX\\<SHA-1 of the plaintext> as Defender writes them
(../shared/reference/defender-quarantine.md): RC4 with Defender's public key over the output of
BackupRead (security descriptor, DATA, optionally a Zone.Identifier stream). This encoder, and
the small reader the simulated collection script uses, are written independently of the
product's decoder (joedefender.formats.defender_quarantine) on purpose: end-to-end tests then check the
product's decoder against this independent description of the format instead of against itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

ROOT = "C:\\ProgramData\\Microsoft\\Windows Defender\\Quarantine"

_KEY = bytes.fromhex(
    "1e87781b8dbaa844ce69702c0c78b786a3f623b738f5edf9af83530fb3fc54faa21eb9cf1331fd0f0da954f687cb9e18"
    "279697900e53fb317c9cbce48e23d05371ecc15951b8f3649d7ca33ed68dc9047e82c9baad9799d0d458cb847ca9ffbe"
    "3c8a775233557dde13a8b14087cc1bc8f10f6ecdd083a959cff84a9d1d50755e3e191818af23e2293558766d2c07e257"
    "12b2ca0b535ed8f6c56ce73d24bdd0291771861a54b4c285a9a3db7aca6d224aeacd621db9f2a22ed1e9e11d75bed7dc"
    "0ecb0a8e68a2ff1263408dc808dffd164b116774cd0b9b8d05411ed6262e429ba495676b8398db2f35d3c1b9ced52636"
    "f2765e1a95cb7ca4c3ddabddbff38253"
)

# A self-relative security descriptor (owner and group SYSTEM, no ACLs): what the SD stream holds.
_SID_SYSTEM = bytes([1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0])
SECURITY_DESCRIPTOR = struct.pack("<BBHIIII", 1, 0, 0x8000, 20, 20 + len(_SID_SYSTEM), 0, 0) + _SID_SYSTEM * 2
ZONE_STREAM_NAME = ":Zone.Identifier:$DATA"


class _Cipher:
    """RC4 keyed with Defender's key; libcrypto when present (fast), Python otherwise."""

    def __init__(self) -> None:
        self._native = _native()
        if self._native is not None:
            self._key = ctypes.create_string_buffer(4096)
            self._native.RC4_set_key(self._key, len(_KEY), _KEY)
            return
        box = list(range(256))
        j = 0
        for i in range(256):
            j = (j + box[i] + _KEY[i % 256]) % 256
            box[i], box[j] = box[j], box[i]
        self._box, self._x, self._y = box, 0, 0

    def __call__(self, data: bytes) -> bytes:
        if self._native is not None:
            out = ctypes.create_string_buffer(max(1, len(data)))
            self._native.RC4(self._key, ctypes.c_size_t(len(data)), data, out)
            return out.raw[: len(data)]
        box, x, y = self._box, self._x, self._y
        result = bytearray(len(data))
        for n, byte in enumerate(data):
            x = (x + 1) % 256
            y = (y + box[x]) % 256
            box[x], box[y] = box[y], box[x]
            result[n] = byte ^ box[(box[x] + box[y]) % 256]
        self._x, self._y = x, y
        return bytes(result)


_NATIVE: list[ctypes.CDLL | None] = []


def _native() -> ctypes.CDLL | None:
    if not _NATIVE:
        lib: ctypes.CDLL | None = None
        found = ctypes.util.find_library("crypto")
        if found:
            try:
                lib = ctypes.CDLL(found)
                lib.RC4_set_key.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
                lib.RC4.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
            except (OSError, AttributeError):
                lib = None
        _NATIVE.append(lib)
    return _NATIVE[0]


def stream_header(stream_id: int, attributes: int, size: int, name: str = "") -> bytes:
    """One WIN32_STREAM_ID of BackupRead's output, with its name."""
    encoded = name.encode("utf-16-le")
    return struct.pack("<IIQI", stream_id, attributes, size, len(encoded)) + encoded


def _zone_identifier(original_path: str) -> bytes:
    return f"[ZoneTransfer]\r\nZoneId=3\r\nReferrerUrl={original_path}\r\n".encode()


@dataclass(frozen=True)
class QuarantinedFile:
    """One detected file as the quarantine holds it: its Entries file and its ResourceData file."""

    threat_name: str
    original_path: str
    entry_id: str
    resource_id: str  # 40 uppercase hex
    payload_size: int
    payload_sha256: str
    _plaintext: Callable[[], Iterator[bytes]]
    entries_bytes: bytes

    @property
    def entries_path(self) -> str:
        return f"{ROOT}\\Entries\\{{{self.entry_id}}}"

    @property
    def resource_path(self) -> str:
        return f"{ROOT}\\ResourceData\\{self.resource_id[:2]}\\{self.resource_id}"

    @property
    def resource_size(self) -> int:
        zone = _zone_identifier(self.original_path)
        return 20 + len(SECURITY_DESCRIPTOR) + 20 + self.payload_size + 20 + 44 + len(zone)

    def resource_chunks(self) -> Iterator[bytes]:
        """The encrypted ResourceData file, produced chunk by chunk (one RC4 stream from offset 0)."""
        return encrypted(self._plaintext())


def encrypted(plaintext: Iterable[bytes]) -> Iterator[bytes]:
    """A ResourceData file from its BackupRead plaintext, chunk by chunk: one RC4 stream."""
    cipher = _Cipher()
    for chunk in plaintext:
        yield cipher(chunk)


def quarantine(
    threat_id: int, threat_name: str, original_path: str, payload: Callable[[], Iterable[bytes]]
) -> QuarantinedFile:
    """What Defender writes when it quarantines the file at ``original_path``."""
    size, sha256, sha1 = 0, hashlib.sha256(), hashlib.sha1()  # noqa: S324 - Defender names files by SHA-1
    zone = _zone_identifier(original_path)
    for chunk in payload():
        size += len(chunk)
        sha256.update(chunk)

    def plaintext() -> Iterator[bytes]:
        yield stream_header(3, 2, len(SECURITY_DESCRIPTOR)) + SECURITY_DESCRIPTOR
        yield stream_header(1, 0, size)
        yield from payload()
        yield stream_header(4, 0, len(zone), ZONE_STREAM_NAME) + zone

    for chunk in plaintext():
        sha1.update(chunk)
    resource_id = sha1.hexdigest().upper()
    digest = hashlib.md5(f"{threat_id}:{original_path}".encode()).digest()  # noqa: S324 - an id, not security
    entry_id = str(uuid.UUID(bytes=struct.pack(">IHH", threat_id & 0xFFFFFFFF, 0, 0) + digest[:8])).upper()
    entries = _entries_file(entry_id, threat_id, threat_name, original_path, resource_id, size)
    return QuarantinedFile(
        threat_name, original_path, entry_id, resource_id, size, sha256.hexdigest(), plaintext, entries
    )


def _entries_file(entry_id: str, threat_id: int, threat_name: str, path: str, resource_id: str, size: int) -> bytes:
    """Header, section 1 and section 2, each RC4-encrypted from a fresh state."""
    filetime = 133_800_000_000_000_000  # late 2024, in 100 ns since 1601
    section1 = (
        uuid.UUID(entry_id).bytes_le
        + bytes(16)
        + struct.pack("<QQI", filetime, threat_id, 1)
        + threat_name.encode("utf-8")
        + b"\0"
    )
    resource = bytearray(("\\\\?\\" + path).encode("utf-16-le") + b"\0\0")
    fields: list[tuple[int, int, bytes]] = [
        (0x02, 4, bytes.fromhex(resource_id)),
        (0x12, 6, struct.pack("<Q", size)),
        (0x0C, 2, path.encode("utf-16-le") + b"\0\0"),
    ]
    resource += struct.pack("<H", len(fields)) + b"file\0"
    body_offset = 8  # the count and one offset come first
    for identifier, kind, data in fields:
        while (body_offset + len(resource)) % 4:
            resource += b"\0"
        resource += struct.pack("<HH", len(data), (kind << 12) | identifier) + data
    section2 = struct.pack("<II", 1, body_offset) + bytes(resource)
    return entries_file(section1, section2)


def entries_file(section1: bytes, section2: bytes) -> bytes:
    """An Entries file from its two plaintext sections: the header, then each part encrypted
    from a fresh RC4 state."""
    header = (
        b"\xdb\xe8\xc5\x01\x01\x00\x01\x00"
        + bytes(32)
        + struct.pack("<IIII", len(section1), len(section2), 0, 0)
        + b"\xdb\xe8\xc5\x02"
    )
    return b"".join(_Cipher()(part) for part in (header, section1, section2))


def read_payload(encrypted: Iterable[bytes]) -> bytes | None:
    """What the simulated collection script decodes on the endpoint: the DATA stream of a
    ResourceData file, by the offsets of the real samples; None if it is not one."""
    cipher = _Cipher()
    plain = b"".join(cipher(chunk) for chunk in encrypted)
    if len(plain) < 20:
        return None
    sd_id, _, sd_len = struct.unpack_from("<IIQ", plain, 0)
    data_at = 20 + sd_len
    if sd_id != 3 or data_at + 20 > len(plain):
        return None
    data_id, _, data_len, name_len = struct.unpack_from("<IIQI", plain, data_at)
    start = data_at + 20 + name_len
    if data_id != 1 or start + data_len > len(plain):
        return None
    return plain[start : start + data_len]
