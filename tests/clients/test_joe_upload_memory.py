"""A large sample's upload to Joe Sandbox holds no chunk of it in memory (issue 22: two 300 MiB
samples streamed at once in 150 MB).

The Joe emulator reads each chunk whole, so it would hide the client's own allocations in this
process; a bare server that reads every body in 64 KiB pieces and answers as Joe does stands in for
it here (the emulator checks the uploads themselves: test_joe_client.py). Python's allocations are
traced while the client uploads a sample of one request (9 MiB) and one of three chunks (25 MiB).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import socketserver
import threading
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from pydantic import SecretStr

from joedefender.adapters.joe.client import JoeSandboxClient

MIB = 1024 * 1024


class _Sink(BaseHTTPRequestHandler):
    """Every POST read in 64 KiB pieces (and hashed), answered with Joe's envelope."""

    protocol_version = "HTTP/1.1"
    bodies: list[tuple[str, int]] = []

    def do_POST(self) -> None:
        left = int(self.headers["Content-Length"])
        digest = hashlib.sha256()
        while left:
            piece = self.rfile.read(min(left, 64 * 1024))
            digest.update(piece)
            left -= len(piece)
        self.bodies.append((self.path, int(self.headers["Content-Length"])))
        answer = json.dumps({"data": {"submission_id": "1"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Sink.bodies = []
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("mib", "requests"), [(9, 0), (25, 3)])
def test_an_upload_streams_from_the_sample(sink: str, mib: int, requests: int) -> None:
    sample = io.BytesIO(random.Random(3).randbytes(mib * MIB))
    client = JoeSandboxClient(sink, SecretStr("k" * 64), accept_tac=True)
    try:
        tracemalloc.start()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        assert client.submit_file(sample, "big.exe") == "1"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        client.close()
    sent = {path.rsplit("/", 1)[-1]: size for path, size in _Sink.bodies}
    chunks = [size for path, size in _Sink.bodies if path.endswith("chunked-sample")]
    assert len(chunks) == requests  # 10 + 10 + 5 MiB, each with its fields; or none
    assert sum(chunks) + (sent["new"] if not chunks else 0) > mib * MIB
    assert peak - before < 2 * MIB  # jbxapi's own upload held three copies of the sample or chunk
