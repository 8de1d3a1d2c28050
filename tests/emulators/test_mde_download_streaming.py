"""A GetFile result is streamed: gzip is produced chunk by chunk, never the whole file in memory."""

from __future__ import annotations

import hashlib
import tracemalloc
import zlib

import httpx
import pytest

from .conftest import ONLINE, command, mde_scenario_raw

SIZE = 200 * 1024 * 1024


@pytest.mark.slow
def test_a_200_mb_sample_downloads_without_200_mb_of_memory(make_mde):
    raw = mde_scenario_raw()
    raw["samples"]["huge"] = {"generate": {"size": SIZE, "seed": 11}}
    raw["defender"]["machines"][0]["files"].append({"path": "C:\\huge.bin", "sample": "huge"})
    mde = make_mde(raw)
    blob = mde.emulator.scenario.samples["huge"]
    expected = hashlib.sha256()
    for chunk in blob.chunks():
        expected.update(chunk)

    action = mde.run_live_response(ONLINE, [command("GetFile", Path="C:\\huge.bin")]).json()
    mde.advance(3600)
    assert mde.action(action["id"])["status"] == "Succeeded"
    link = mde.get(f"/api/machineactions/{action['id']}/GetLiveResponseResultDownloadLink(index=0)").json()["value"]

    received = hashlib.sha256()
    size = 0
    gunzip = zlib.decompressobj(wbits=31)
    tracemalloc.start()
    try:
        with httpx.stream("GET", link, verify=mde.ssl, timeout=60) as response:
            assert response.status_code == 200
            for piece in response.iter_raw(1 << 20):
                plain = gunzip.decompress(piece)
                received.update(plain)
                size += len(plain)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert gunzip.eof
    assert size == SIZE
    assert received.hexdigest() == expected.hexdigest()
    # Server and client share this process: both stayed far below the file's size.
    assert peak < 40 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"
