"""Azurite, the Azure Storage emulator, started once per test session for the Azure store tests.

`make install` puts a pinned Azurite in ./node_modules (package.json). The fixture starts it on
free loopback ports with in-memory storage, waits until its table and queue services answer, and
stops it at the end. Without Azurite installed the tests that need it are skipped, unless
JOEDEFENDER_REQUIRE_AZURITE=1 (as `.ci/run` sets it) makes that a failure.

Use it from a conftest.py: `from tests.azurite import azurite  # noqa: F401`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / "node_modules" / ".bin" / "azurite"
# The emulator's well-known development account: a public, documented constant, not a secret.
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_READY_WITHIN = 60.0  # seconds; it starts in about 0.6 s on an idle machine


@dataclass(frozen=True)
class Azurite:
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{self.table_port}/{ACCOUNT};"
        )


def unique_prefix() -> str:
    """A storage prefix of its own for one test: its table and queues are nobody else's."""
    return f"t{uuid.uuid4().hex[:12]}"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    if not AZURITE.exists():
        if os.environ.get("JOEDEFENDER_REQUIRE_AZURITE") == "1":
            pytest.fail(f"Azurite is not installed at {AZURITE}: run `make install`")
        pytest.skip("Azurite is not installed (run `make install`)")
    blob, queue, table = _free_ports(3)
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(AZURITE),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--silent",
                *("--blobHost", "127.0.0.1", "--blobPort", str(blob)),
                *("--queueHost", "127.0.0.1", "--queuePort", str(queue)),
                *("--tableHost", "127.0.0.1", "--tablePort", str(table)),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path_factory.getbasetemp(),
        )
    try:
        deadline = time.monotonic() + _READY_WITHIN
        while not (_answers(queue) and _answers(table)):
            if process.poll() is not None:
                pytest.fail(f"Azurite exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"Azurite did not answer within {_READY_WITHIN:.0f} s")
            time.sleep(0.05)
        yield Azurite(blob, queue, table)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
