"""TEMPORARY Azurite fixture until branch azure-store (which owns the fixture) is merged."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

_AZURITE = Path(os.environ.get("AZURITE", "/tmp/azfunc-azurite/node_modules/.bin/azurite"))
_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def azurite_connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not _AZURITE.exists():
        pytest.skip("azurite is not installed")
    ports = [_free_port() for _ in range(3)]
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                str(_AZURITE),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--silent",
                "--blobHost",
                "127.0.0.1",
                "--queueHost",
                "127.0.0.1",
                "--tableHost",
                "127.0.0.1",
                "--blobPort",
                str(ports[0]),
                "--queuePort",
                str(ports[1]),
                "--tablePort",
                str(ports[2]),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{ports[2]}/", timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    yield (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{ports[0]}/devstoreaccount1;"
        f"QueueEndpoint=http://127.0.0.1:{ports[1]}/devstoreaccount1;"
        f"TableEndpoint=http://127.0.0.1:{ports[2]}/devstoreaccount1;"
    )
    process.terminate()
    process.wait(timeout=10)
