"""The connector's decoder of Defender's quarantine (joedefender.formats.defender_quarantine), on
synthetic vectors built here (license-free, as in reference/defender-quarantine.md section 6),
and fuzzed: nothing but QuarantineFormatError may come out of damaged input."""

from __future__ import annotations

import contextlib
import hashlib
import random
import struct
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from joedefender.domain.errors import QuarantineFormatError
from joedefender.formats.defender_quarantine import (
    RC4_KEY,
    Rc4,
    ResourceDecoder,
    decode_resource,
    parse_entries,
    rc4,
)

FIRST_KEYSTREAM_BYTES = "08ad009893fdde68c2f991c781fafc90"  # reference notes, section 2
SD = bytes.fromhex("0100048014000000300000000000000000000000") + bytes(24)  # any self-relative SD bytes
ZONE = b"[ZoneTransfer]\r\nZoneId=3\r\nReferrerUrl=C:\\Users\\user\\Downloads\\x.zip\r\n"


def _header(stream_id: int, size: int, name: str = "", attributes: int = 0) -> bytes:
    encoded = name.encode("utf-16-le")
    return struct.pack("<IIQI", stream_id, attributes, size, len(encoded)) + encoded


def _blob(payload: bytes, *, zone: bytes | None = None, sd: bytes = SD) -> bytes:
    """The BackupRead output Defender encrypts: SECURITY_DATA, DATA, maybe a Zone.Identifier."""
    plain = _header(3, len(sd), attributes=2) + sd + _header(1, len(payload)) + payload
    if zone is not None:
        plain += _header(4, len(zone), ":Zone.Identifier:$DATA") + zone
    return plain


def _encrypt(plain: bytes) -> bytes:
    return Rc4(native=False).apply(plain)


def _decode(ciphertext: bytes, chunk: int = 7) -> bytes:
    return b"".join(decode_resource(ciphertext[i : i + chunk] for i in range(0, len(ciphertext), chunk)))


# ---------------------------------------------------------------- RC4


def test_rc4_with_the_defender_key_gives_the_documented_keystream() -> None:
    assert len(RC4_KEY) == 256
    assert rc4(bytes(16)).hex() == FIRST_KEYSTREAM_BYTES
    assert Rc4(native=False).apply(bytes(16)).hex() == FIRST_KEYSTREAM_BYTES


def test_native_and_python_rc4_agree_across_chunks() -> None:
    data = random.Random(3).randbytes(10_000)
    native, python = Rc4(), Rc4(native=False)
    pieces = [data[:1], data[1:4097], data[4097:]]
    assert b"".join(native.apply(p) for p in pieces) == b"".join(python.apply(p) for p in pieces)


def test_ciphertext_starts_as_real_resource_data_does() -> None:
    assert _encrypt(_blob(b"x"))[:4].hex() == "0bad0098"


# ---------------------------------------------------------------- ResourceData


@pytest.mark.parametrize("zone", [None, ZONE])
@pytest.mark.parametrize("chunk", [1, 7, 20, 4096])
def test_the_payload_comes_back_with_and_without_an_alternate_stream(zone: bytes | None, chunk: int) -> None:
    payload = b"MZ\x90\x00 synthetic payload " * 13
    decoder = ResourceDecoder()
    ciphertext = _encrypt(_blob(payload, zone=zone))
    out = b"".join(piece for i in range(0, len(ciphertext), chunk) for piece in decoder.feed(ciphertext[i : i + chunk]))
    info = decoder.finish()
    assert out == payload
    assert info.payload_size == len(payload)
    assert [s.stream_id for s in info.streams] == ([3, 1, 4] if zone else [3, 1])
    assert info.alternate_streams == ([":Zone.Identifier:$DATA"] if zone else [])


def test_the_walk_follows_headers_not_fixed_offsets() -> None:
    """A larger security descriptor, an empty payload, and streams in an unusual order."""
    sd = bytes(range(256)) * 3
    plain = _header(4, 3, ":x:$DATA") + b"ads" + _header(3, len(sd)) + sd + _header(1, 0)
    assert _decode(_encrypt(plain)) == b""


def test_sparse_blocks_are_placed_at_their_offsets() -> None:
    plain = _header(3, len(SD)) + SD + _header(1, 0, attributes=8)
    plain += _header(9, 8 + 3) + struct.pack("<q", 0) + b"abc"
    plain += _header(9, 8 + 2) + struct.pack("<q", 70_000) + b"yz"
    out = _decode(_encrypt(plain), chunk=5)
    assert out == b"abc" + bytes(70_000 - 3) + b"yz"


def test_a_large_payload_streams_in_constant_memory() -> None:
    """Chunks in, chunks out: no output piece is larger than the input piece that carried it."""
    size = 3 * 1024 * 1024
    payload = random.Random(1).randbytes(size)
    ciphertext = Rc4().apply(_blob(payload, zone=ZONE))
    decoder = ResourceDecoder()
    digest, largest = hashlib.sha256(), 0
    for i in range(0, len(ciphertext), 65536):
        for piece in decoder.feed(ciphertext[i : i + 65536]):
            largest = max(largest, len(piece))
            digest.update(piece)
    decoder.finish()
    assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()
    assert largest <= 65536


@pytest.mark.parametrize(
    ("plain", "complaint"),
    [
        (b"", "empty"),
        (_header(3, len(SD)) + SD, "no DATA stream"),
        (_header(3, len(SD)) + SD + _header(1, 100) + b"short", "truncated"),
        (_header(3, len(SD))[:10], "truncated"),
        (_header(0, 4) + b"abcd", "unknown stream id"),
        (_header(12, 4) + b"abcd", "unknown stream id"),
        (struct.pack("<IIQI", 4, 0, 0, 4096), "stream name"),
        (struct.pack("<IIQI", 4, 0, 0, 3) + b"abc", "stream name"),
        (_header(1, 1) + b"a" + _header(1, 1) + b"b", "second DATA"),
        (_header(9, 4) + b"abcd", "sparse block"),
        (
            _header(1, 0) + _header(9, 9) + struct.pack("<q", 5) + b"a" + _header(9, 9) + struct.pack("<q", 2) + b"b",
            "goes back",
        ),
        # A size field of 2**63 is never allocated: the walk just runs out of input.
        (_header(3, 2**63) + b"x" * 100, "truncated"),
    ],
)
def test_damaged_resource_data_is_a_clear_error(plain: bytes, complaint: str) -> None:
    with pytest.raises(QuarantineFormatError, match=complaint):
        _decode(_encrypt(plain))


def test_the_payload_limit_is_enforced_while_streaming() -> None:
    with pytest.raises(QuarantineFormatError, match="limit"):
        b"".join(decode_resource([_encrypt(_blob(b"x" * 100))], max_payload_bytes=99))
    huge_gap = _header(1, 0) + _header(9, 9) + struct.pack("<q", 2**62) + b"a"
    with pytest.raises(QuarantineFormatError, match="limit"):
        b"".join(decode_resource([_encrypt(huge_gap)], max_payload_bytes=1 << 20))


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), chunk=st.integers(min_value=1, max_value=64))
def test_fuzzed_resource_data_never_raises_anything_else(data: bytes, chunk: int) -> None:
    with contextlib.suppress(QuarantineFormatError):
        _decode(data, chunk)


@settings(max_examples=300, deadline=None, database=None)
@given(
    payload=st.binary(max_size=200),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=10_000), st.integers(1, 255)), max_size=4),
    cut=st.integers(min_value=0, max_value=10_000),
)
def test_fuzzed_damage_to_a_valid_file_never_raises_anything_else(
    payload: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    ciphertext = bytearray(_encrypt(_blob(payload, zone=ZONE)))
    for at, mask in flips:
        ciphertext[at % len(ciphertext)] ^= mask
    damaged = bytes(ciphertext[: cut % (len(ciphertext) + 1)])
    with contextlib.suppress(QuarantineFormatError):
        _decode(damaged)


# ---------------------------------------------------------------- Entries


def _entries(threat_name: str, path: str, resource_id: bytes, size: int, *, extra_resource: bool = False) -> bytes:
    """An Entries file as the reference notes lay it out (section 3), each part encrypted anew."""
    entry_id = uuid.UUID("80008a1b-0000-0000-7065-3ea2b161b275")
    section1 = entry_id.bytes_le + bytes(16) + struct.pack("<QQI", 132_870_000_000_000_000, 2147519003, 1)
    section1 += threat_name.encode() + b"\0"
    resources: list[bytes] = []
    offsets: list[int] = []
    count = 2 if extra_resource else 1
    at = 4 + 4 * count
    for n in range(count):
        body = bytearray(("\\\\?\\" + path).encode("utf-16-le") + b"\0\0")
        fields = [(0x02, 4, resource_id), (0x12, 6, struct.pack("<Q", size)), (0x0A, 3, struct.pack("<I", 0))]
        if n == 1:
            fields = []  # a regkey resource: no ResourceData
        body += struct.pack("<H", len(fields)) + (b"file\0" if n == 0 else b"regkey\0")
        for identifier, field_type, data in fields:
            while (at + len(body)) % 4:
                body += b"\0"
            body += struct.pack("<HH", len(data), field_type << 12 | identifier) + data
        offsets.append(at)
        resources.append(bytes(body))
        at += len(body)
    section2 = struct.pack("<I", count) + b"".join(struct.pack("<I", o) for o in offsets) + b"".join(resources)
    header = b"\xdb\xe8\xc5\x01\x01\x00\x01\x00" + bytes(32)
    header += struct.pack("<IIII", len(section1), len(section2), 0, 0) + b"\xdb\xe8\xc5\x02"
    return b"".join(Rc4(native=False).apply(part) for part in (header, section1, section2))


RESOURCE_ID = bytes.fromhex("F7054EAE579A87B7DE9B39B7E0C7ACBDF0C8FBC8")


def test_an_entries_file_gives_threat_path_size_and_resource() -> None:
    entry = parse_entries(_entries("Virus:DOS/EICAR_Test_File", "C:\\Windows\\Temp\\eicar.com", RESOURCE_ID, 68))
    assert entry.threat_name == "Virus:DOS/EICAR_Test_File"
    assert entry.threat_id == 2147519003
    assert entry.entry_id == "80008A1B-0000-0000-7065-3EA2B161B275"
    assert entry.detected_at is not None
    assert entry.detected_at.year == 2022
    (resource,) = entry.resources
    assert resource.path == "C:\\Windows\\Temp\\eicar.com"
    assert resource.kind == "file"
    assert resource.size == 68
    assert resource.resource_id == RESOURCE_ID.hex().upper()
    assert resource.resource_data_path == "ResourceData\\F7\\F7054EAE579A87B7DE9B39B7E0C7ACBDF0C8FBC8"


def test_resources_without_resource_data_are_listed_without_one() -> None:
    entry = parse_entries(_entries("T", "C:\\x.exe", RESOURCE_ID, 1, extra_resource=True))
    assert [(r.kind, r.resource_data_path is None) for r in entry.resources] == [("file", False), ("regkey", True)]


@pytest.mark.parametrize(
    ("damage", "complaint"),
    [
        (lambda b: b[:20], "too short"),
        (lambda b: b"\0" * len(b), "wrong magic"),
        (lambda b: b[:-1], "announces"),
        (lambda b: b + b"x", "announces"),
        (lambda b: b"x" * (1 << 21), "too large"),
    ],
)
def test_damaged_entries_are_a_clear_error(damage: object, complaint: str) -> None:
    good = _entries("T", "C:\\x.exe", RESOURCE_ID, 1)
    with pytest.raises(QuarantineFormatError, match=complaint):
        parse_entries(damage(good))  # type: ignore[operator]


@settings(max_examples=300, deadline=None, database=None)
@given(
    flips=st.lists(st.tuples(st.integers(min_value=0x3C, max_value=10_000), st.integers(1, 255)), max_size=6),
    cut=st.integers(min_value=0, max_value=10_000),
)
def test_fuzzed_entries_never_raise_anything_else(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_entries("Trojan:Win32/Fuzz", "C:\\Users\\u\\f.exe", RESOURCE_ID, 5, extra_resource=True))
    for at, mask in flips:
        data[at % len(data)] ^= mask
    with contextlib.suppress(QuarantineFormatError):
        parse_entries(bytes(data[: cut % (len(data) + 1)]) if cut % 3 == 0 else bytes(data))


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.binary(max_size=400))
def test_fuzzed_random_entries_never_raise_anything_else(data: bytes) -> None:
    header = _entries("T", "C:\\x.exe", RESOURCE_ID, 1)[:0x3C]
    try:
        parse_entries(data)
        parse_entries(header + data)
    except QuarantineFormatError:
        pass
