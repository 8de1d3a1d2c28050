"""A 200 MB GetFile result streamed from the emulator with little memory, its bytes intact."""

from __future__ import annotations

import hashlib
import logging
import re
import tracemalloc

from joedefender.adapters.defender import LiveResponseCommand, MachineActionStatus

from .mde_fixtures import MACHINE, client_for, count, emulators, wait_for

# Large enough that holding it whole could not pass for streaming (the peak must stay under an
# eighth of it), small enough to stay quick on a loaded machine: bench.memory streams 300 MiB samples.
SIZE = 128 * 1024 * 1024
BIG_PATH = "C:\\Users\\alice\\Downloads\\huge.iso"
PEAK_LIMIT = 16 * 1024 * 1024


def test_a_128_mib_get_file_result_streams_in_bounded_memory(caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # whatever an earlier test of this process set it to
    big_machine = {
        "id": MACHINE,
        "computerDnsName": "pc1.contoso.com",
        "files": [{"path": BIG_PATH, "sample": "big"}],
    }
    with emulators(samples={"big": {"generate": {"size": SIZE, "seed": 7}}}, machines=[big_machine]) as emu:
        expected = emu.scenario.samples["big"].sha256  # computed before measuring
        with client_for(emu) as client:
            action = client.run_live_response(MACHINE, [LiveResponseCommand.get_file(BIG_PATH)], "collect")
            wait_for(
                lambda: client.get_machine_action(action.id).status == MachineActionStatus.SUCCEEDED,
                step=lambda: emu.clock.advance(30),
            )
            digest = hashlib.sha256()
            size = 0
            tracemalloc.start()
            try:
                with client.stream_result(action.id, 0, gunzip=True, max_bytes=SIZE) as chunks:
                    for chunk in chunks:
                        digest.update(chunk)
                        size += len(chunk)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert size == SIZE
        assert digest.hexdigest() == expected
        assert peak < PEAK_LIMIT, f"peak {peak / 2**20:.1f} MiB"
        assert count(emu, "liveresponse.download") == 1
    # the link's signature is a credential: the client side's logs (httpx logs every URL) must not show it
    client_side = [r.getMessage() for r in caplog.records if not r.name.startswith("joedefender_emulators")]
    assert any("CustomPlaybookCommandOutput" in line and "sig=***" in line for line in client_side)
    assert not any(re.search(r"sig=(?!\*\*\*)", line) for line in client_side)
