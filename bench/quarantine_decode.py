"""How fast the connector decodes a quarantine entry (RC4 + BackupRead stream walk), and whether
memory stays flat: a synthetic ResourceData file of --mib MiB is encrypted by the emulator's
independent encoder, then decoded in 1 MiB chunks (as GetFile streams it) into a SHA-256.

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
from collections.abc import Iterator
from typing import Any

from joedefender.formats.defender_quarantine import Rc4, ResourceDecoder
from joedefender_emulators.mde import quarantine as store

_CHUNK = 1 << 20


def _payload(mib: int) -> Iterator[bytes]:
    rng = random.Random(mib)
    for _ in range(mib):
        yield rng.randbytes(_CHUNK)


def run(mib: int) -> dict[str, Any]:
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
            digest.update(decoder.feed(chunk))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = run(args.mib)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
