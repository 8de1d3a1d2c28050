"""How fast the connector decodes a quarantine entry (RC4 + BackupRead stream walk), whether
memory stays flat, and what the crafted files of an attacker cost it.

- throughput: a synthetic ResourceData file of --mib MiB, encrypted by the emulator's
  independent encoder, decoded in 1 MiB chunks (as GetFile streams it) into a SHA-256;
- entries: every hostile 1 MiB Entries layout (joedefender_emulators.mde.hostile_quarantine),
  with as many resources as fit and with as many as the parser accepts, and the largest
  well-formed file: CPU milliseconds, peak traced memory, outcome; and the review's layout
  (100 resources pointing at one 100,000-character path) at 10, 50 and 100 resources;
- resource_data: the hostile ResourceData layouts (a far sparse block, a ladder of them, a flood
  of named streams), decoded with the pipeline's 3 GiB cap: CPU seconds, peak memory, outcome.

    .venv/bin/python -m bench.quarantine_decode --mib 64 --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

from joedefender.domain.errors import QuarantineFormatError
from joedefender.formats.defender_quarantine import MAX_FIELDS, MAX_RESOURCES, Rc4, ResourceDecoder, parse_entries
from joedefender_emulators.mde import hostile_quarantine as hostile
from joedefender_emulators.mde import quarantine as store

_CHUNK = 1 << 20
_MIB = 1 << 20


def _payload(mib: int) -> Iterator[bytes]:
    rng = random.Random(mib)
    for _ in range(mib):
        yield rng.randbytes(_CHUNK)


def throughput(mib: int) -> dict[str, Any]:
    entry = store.quarantine(0x80000001, "Bench:Win32/Sample", "C:\\bench.bin", lambda: _payload(mib))
    with tempfile.TemporaryFile() as encrypted:  # ciphertext only, as GetFile would deliver it
        for chunk in entry.resource_chunks():
            encrypted.write(chunk)
        size = encrypted.tell()
        encrypted.seek(0)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        decoder, digest = ResourceDecoder(), hashlib.sha256()
        started = time.perf_counter()
        while chunk := encrypted.read(_CHUNK):
            for piece in decoder.feed(chunk):
                digest.update(piece)
        decoder.finish()
        seconds = time.perf_counter() - started
    return {
        "payload_mib": mib,
        "resource_data_bytes": size,
        "sha256_matches": digest.hexdigest() == entry.payload_sha256,
        "native_rc4": Rc4().native,
        "decode_and_hash_seconds": round(seconds, 3),
        "decode_mib_per_second": round(mib / seconds, 1),
        "max_rss_growth_mib": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024, 1),
    }


def _measured(work: Callable[[], str]) -> dict[str, Any]:
    """The outcome of ``work``, its CPU time (a run of its own) and its peak traced memory."""
    started = time.thread_time()
    outcome = work()
    cpu = time.thread_time() - started
    tracemalloc.start()
    try:
        work()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return {"cpu_ms": round(cpu * 1000, 2), "peak_mib": round(peak / _MIB, 2), "outcome": outcome[:100]}


def _parse(data: bytes) -> Callable[[], str]:
    def work() -> str:
        try:
            return f"parsed: {len(parse_entries(data).resources)} resources"
        except QuarantineFormatError as exc:
            return f"refused: {exc}"

    return work


def entries() -> dict[str, Any]:
    layouts = {f"{name}, most": data for name, data in hostile.hostile_entries(_MIB).items()}
    accepted = hostile.hostile_entries(_MIB, MAX_RESOURCES)
    layouts |= {f"{name}, {MAX_RESOURCES}": data for name, data in accepted.items()}
    layouts["well-formed"] = hostile.well_formed(MAX_RESOURCES, MAX_FIELDS, _MIB)
    results = {name: _measured(_parse(data)) for name, data in layouts.items()}
    review = {
        f"{count} resources at one 100,000-character path": _measured(_parse(hostile.shared_path(count, 100_000)))
        for count in (10, 50, 100)
    }
    return {
        "file_bytes": _MIB,
        "worst_cpu_ms": max(r["cpu_ms"] for r in results.values()),
        "worst_peak_mib": max(r["peak_mib"] for r in results.values()),
        "layouts": results,
        "review_layout": review,
    }


def _decode(make: Callable[[], Iterator[bytes]]) -> Callable[[], str]:
    def work() -> str:
        decoder, digest = ResourceDecoder(), hashlib.sha256()
        try:
            for chunk in make():
                for piece in decoder.feed(chunk):
                    digest.update(piece)
            info = decoder.finish()
        except QuarantineFormatError as exc:
            return f"refused: {exc}"
        return f"decoded: {info.payload_size} bytes, {len(info.streams)}+{info.unlisted_streams} streams"

    return work


def resource_data() -> dict[str, Any]:
    results = {name: _measured(_decode(make)) for name, make in hostile.hostile_resource_data(100_000).items()}
    return {"worst_peak_mib": max(r["peak_mib"] for r in results.values()), "layouts": results}


def run(mib: int) -> dict[str, Any]:
    return {"throughput": throughput(mib), "entries": entries(), "resource_data": resource_data()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = run(args.mib)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for part, values in result.items():
        print(f"{part}:")
        for key, value in values.items():
            if isinstance(value, dict):
                for name, measured in value.items():
                    print(f"  {name}: {measured}")
            else:
                print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
