"""The quarantine decoders on what an attacker who can write to one endpoint's Quarantine folder
could plant (joedefender_emulators.mde.hostile_quarantine, built from the layout alone): linear
work, bounded memory, and nothing but QuarantineFormatError.

Work is counted, not timed: a profiler counts the function calls a parse makes (a quadratic
parse makes millions and is stopped at the budget); tracemalloc measures the memory. The one
time check is CPU time of the parsing thread (not wall-clock: other processes do not count),
with a wide margin over the few milliseconds a linear pass over 1 MiB takes.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from joedefender.domain.errors import QuarantineFormatError
from joedefender.formats import defender_quarantine as codec
from joedefender.formats.defender_quarantine import MAX_STREAMS, PayloadLimitError, Rc4, ResourceDecoder
from joedefender_emulators.mde import hostile_quarantine as hostile
from joedefender_emulators.mde.quarantine import SECURITY_DESCRIPTOR, encrypted, entries_file, stream_header

MIB = 1 << 20
ENTRIES_CPU_SECONDS = 0.050
ENTRIES_EXTRA_MEMORY = 16 * MIB
RESOURCE_MEMORY = 64 * MIB


def _entries_layouts() -> dict[str, bytes]:
    """Every hostile layout at 1 MiB: with as many resources as fit, and with as many as the
    parser accepts (so it gets past the count and does its most work), and the largest file
    that is well-formed within the parser's limits."""
    layouts = {f"{name}, most": data for name, data in hostile.hostile_entries(MIB).items()}
    accepted = hostile.hostile_entries(MIB, codec.MAX_RESOURCES)
    layouts |= {f"{name}, {codec.MAX_RESOURCES}": data for name, data in accepted.items()}
    layouts["well-formed"] = hostile.well_formed(codec.MAX_RESOURCES, codec.MAX_FIELDS, MIB)
    return layouts


ENTRIES = _entries_layouts()


class TooMuchWork(Exception):
    pass


@contextlib.contextmanager
def counted_calls(budget: int) -> Iterator[list[int]]:
    """Count every Python and C function call; raise TooMuchWork once past ``budget``."""
    calls = [0]

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            calls[0] += 1
            if calls[0] > budget:
                raise TooMuchWork(f"more than {budget} calls")

    sys.setprofile(profile)
    try:
        yield calls
    finally:
        sys.setprofile(None)


def _parse(data: bytes) -> str:
    try:
        entry = codec.parse_entries(data)
    except QuarantineFormatError as exc:
        return f"refused: {exc}"
    return f"{len(entry.resources)} resources"


def _peak_memory(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", list(ENTRIES))
def test_a_crafted_1_mib_entries_file_is_parsed_in_one_bounded_pass(name: str) -> None:
    data = ENTRIES[name]
    assert len(data) == MIB
    # Linear: at most one call per 16 bytes of input (a parse that walks a path once per
    # resource makes one per two bytes, per resource, and is stopped here).
    with counted_calls(len(data) // 16) as calls:
        outcome = _parse(data)
    assert calls[0] > 0
    peak = _peak_memory(lambda: _parse(data))
    assert peak < ENTRIES_EXTRA_MEMORY, f"{name}: {peak / MIB:.1f} MiB ({outcome})"
    if Rc4().native:  # the pure-Python RC4 fallback alone takes longer over 1 MiB
        started = time.thread_time()
        _parse(data)
        cpu = time.thread_time() - started
        assert cpu < ENTRIES_CPU_SECONDS, f"{name}: {cpu * 1000:.1f} ms of CPU ({outcome})"


def test_the_worst_well_formed_file_is_read_whole_and_the_others_are_refused() -> None:
    """The limits let through what Defender writes, however large, and stop only the overlaps."""
    assert _parse(ENTRIES["well-formed"]) == f"{codec.MAX_RESOURCES} resources"
    refusals = {name: _parse(data) for name, data in ENTRIES.items() if name != "well-formed"}
    assert all(outcome.startswith("refused") for outcome in refusals.values()), refusals
    assert "overlap" in refusals[f"shared path (legal length), {codec.MAX_RESOURCES}"]
    assert "overlap" in refusals[f"staggered path, {codec.MAX_RESOURCES}"]


def test_resources_one_after_the_other_and_a_path_of_the_longest_legal_length_are_read() -> None:
    entry = codec.parse_entries(hostile.shared_path(1, codec.MAX_PATH_UNITS))
    (resource,) = entry.resources
    assert len(resource.path) == codec.MAX_PATH_UNITS - 4  # without its \\?\ prefix
    with pytest.raises(QuarantineFormatError, match="no path of at most"):
        codec.parse_entries(hostile.shared_path(1, codec.MAX_PATH_UNITS + 1))
    odd = codec.parse_entries(hostile.shared_path(1, 1000, fill=hostile.ODD_NULS))
    assert odd.resources[0].path == ("C:\\" + hostile.ODD_NULS * 500)[:996]


@pytest.mark.parametrize(("count", "fields"), [(codec.MAX_RESOURCES + 1, 1), (1, codec.MAX_FIELDS + 1)])
def test_counts_over_the_limits_are_refused_by_name(count: int, fields: int) -> None:
    with pytest.raises(QuarantineFormatError, match="allowed"):
        codec.parse_entries(hostile.well_formed(count, fields, 64 * 1024))


# ---------------------------------------------------------------- ResourceData


def _decode_all(chunks: Iterator[bytes], limit: int) -> tuple[str, int]:
    """Decode as the pipeline does (every piece consumed as it comes); the outcome, and the
    largest piece handed out."""
    decoder, digest, largest = ResourceDecoder(limit), hashlib.sha256(), 0
    try:
        for chunk in chunks:
            for piece in decoder.feed(chunk):
                digest.update(piece)
                largest = max(largest, len(piece))
        info = decoder.finish()
    except QuarantineFormatError as exc:
        return f"refused: {exc}", largest
    return f"{info.payload_size} bytes, {len(info.streams)}+{info.unlisted_streams} streams", largest


RESOURCES = hostile.hostile_resource_data(stream_count=MAX_STREAMS + 40_000)


@pytest.mark.parametrize("name", list(RESOURCES))
def test_decoding_any_resource_data_stays_under_64_mb(name: str) -> None:
    result: list[tuple[str, int]] = []
    peak = _peak_memory(lambda: result.append(_decode_all(RESOURCES[name](), 1 << 30)))
    outcome, largest = result[0]
    assert peak < RESOURCE_MEMORY, f"{name}: {peak / MIB:.1f} MiB ({outcome})"
    assert largest <= MIB, outcome  # no piece larger than the chunk that carried it, or 64 KiB of zeros


def test_a_far_sparse_block_gives_its_zeros_lazily_and_stops_at_the_limit() -> None:
    assert _decode_all(hostile.sparse_gap(1 << 28), 1 << 30) == (f"{(1 << 28) + 1} bytes, 3+0 streams", 1 << 16)
    outcome, largest = _decode_all(hostile.sparse_gap(1 << 62), 1 << 30)
    assert outcome == "refused: the payload exceeds the limit of 1073741824 bytes"
    assert largest == 0
    with pytest.raises(PayloadLimitError) as raised:
        b"".join(codec.decode_resource(hostile.sparse_gap(5000), max_payload_bytes=4096))
    assert raised.value.limit == 4096


def test_streams_are_listed_up_to_a_bound_and_a_flood_of_them_is_refused() -> None:
    outcome, _ = _decode_all(hostile.stream_flood(1000, 255), 1 << 30)
    assert outcome == f"1 bytes, {codec.MAX_LISTED_STREAMS}+{1002 - codec.MAX_LISTED_STREAMS} streams"
    outcome, _ = _decode_all(hostile.stream_flood(MAX_STREAMS + 1, 8), 1 << 30)
    assert outcome.startswith(f"refused: more than {MAX_STREAMS} streams")


# ---------------------------------------------------------------- hypothesis, on structure


@st.composite
def _section2(draw: st.DrawFn) -> bytes:
    """A section 2 with a plausible shape: a count, offsets near the bodies, fields whose sizes
    and tags vary, strings that may not end."""
    count = draw(st.integers(min_value=0, max_value=6))
    bodies = bytearray()
    offsets = []
    for _ in range(count):
        offsets.append(4 + 4 * count + len(bodies) + draw(st.sampled_from([0, 0, 1, 2, -2, 4096])))
        bodies += draw(st.text(max_size=12)).encode("utf-16-le", errors="surrogatepass")
        bodies += draw(st.sampled_from([b"\0\0", b"\0", b""]))
        bodies += struct.pack("<H", draw(st.integers(min_value=0, max_value=40)))
        bodies += draw(st.sampled_from([b"file\0", b"regkey\0", b"fi", b""]))
        for _ in range(draw(st.integers(min_value=0, max_value=4))):
            bodies += bytes(-len(bodies) % 4)
            value = draw(st.binary(max_size=24))
            tag = draw(st.sampled_from([0x4002, 0x6012, 0x200C, 0x300A, 0xFFFF]))
            bodies += struct.pack("<HH", draw(st.sampled_from([len(value), 0xFFFF, 20, 8])), tag) + value
    announced = draw(st.sampled_from([count, count + 1, 0xFFFFFFFF]))
    table = struct.pack(f"<I{count}I", announced, *(o & 0xFFFFFFFF for o in offsets))
    return table + bytes(bodies) + draw(st.binary(max_size=8))


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(section2=_section2(), threat=st.binary(max_size=40))
def test_fuzzed_entries_structure_raises_nothing_but_the_format_error(section2: bytes, threat: bytes) -> None:
    section1 = bytes(32) + struct.pack("<QQI", 0, 1, 1) + threat
    with contextlib.suppress(QuarantineFormatError):
        codec.parse_entries(entries_file(section1, section2))


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    streams=st.lists(
        st.tuples(
            st.sampled_from([1, 3, 4, 9, 9, 0, 12]),
            st.integers(min_value=0, max_value=64),
            st.sampled_from([0, 8, 2**40, 2**62, 2**63 - 1, -1]),
            st.text(max_size=6),
        ),
        max_size=8,
    ),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_fuzzed_resource_data_structure_raises_nothing_but_the_format_error(
    streams: list[tuple[int, int, int, str]], chunk: int
) -> None:
    plain = bytearray(stream_header(3, 2, len(SECURITY_DESCRIPTOR)) + SECURITY_DESCRIPTOR)
    for stream_id, size, offset, name in streams:
        body = struct.pack("<q", offset) + bytes(size) if stream_id == 9 else bytes(size)
        plain += stream_header(stream_id, 0, len(body), name) + body
    (ciphertext,) = encrypted([bytes(plain)])
    pieces = (ciphertext[i : i + chunk] for i in range(0, len(ciphertext), chunk))
    with contextlib.suppress(QuarantineFormatError):
        for _ in codec.decode_resource(pieces, max_payload_bytes=1 << 20):
            pass
