"""Chunked sample uploads that stream: jbxapi's protocol, without holding a chunk in memory.

jbxapi 3.25 uploads a large sample in 10 MiB chunks, but builds each chunk's request in memory:
the chunk read into a buffer, then copied twice more into the multipart body (some 40 MiB at
once per upload, so two uploads of any size took the connector from 85 to 200 MB). Here each
chunk's request body is streamed from the sample itself (requests-toolbelt's MultipartEncoder
over a window of the file), in the same form jbxapi sends: the chunk as the `chunk` part (file
name `chunk`), beside the same fields.
"""

from __future__ import annotations

import math
import os
from typing import IO, Any

import jbxapi
from requests_toolbelt.multipart.encoder import MultipartEncoder

CHUNK_SIZE = 10 * 1024 * 1024  # jbxapi's, and what the chunk-size field says


class Window:
    """`length` bytes of a seekable binary file from `start`, read in whatever pieces the
    encoder asks for (each read seeks to where this window is). Its `len` is what is left to
    read, as the encoder takes a part's length."""

    def __init__(self, file: IO[bytes], start: int, length: int) -> None:
        self._file = file
        self._start = start
        self._length = length
        self._position = 0

    def read(self, size: int | None = -1) -> bytes:
        left = self._length - self._position
        wanted = left if size is None or size < 0 else min(size, left)
        if wanted <= 0:
            return b""
        self._file.seek(self._start + self._position)
        data = self._file.read(wanted)
        self._position += len(data)
        return data

    def __len__(self) -> int:
        return self._length - self._position


class StreamingJoeSandbox(jbxapi.JoeSandbox):  # type: ignore[misc]
    """`jbxapi.JoeSandbox` whose chunked uploads stream (everything else is jbxapi's own)."""

    def _chunked_upload(self, url: str, f: IO[bytes], params: dict[str, Any]) -> Any:
        start = f.tell()
        size = f.seek(0, os.SEEK_END) - start
        fields = dict(params) | {
            "file-size": size,
            "chunk-size": CHUNK_SIZE,
            "chunk-count": math.ceil(size / CHUNK_SIZE),
        }
        response = None
        for index, offset in enumerate(range(0, size, CHUNK_SIZE), start=1):
            length = min(CHUNK_SIZE, size - offset)
            parts = [(name, str(value)) for name, value in fields.items()]
            parts += [("current-chunk-index", str(index)), ("current-chunk-size", str(length))]
            chunk = ("chunk", Window(f, start + offset, length), "application/octet-stream")
            body = MultipartEncoder([*parts, ("chunk", chunk)])
            response = self._post(self.apiurl + url, data=body, headers={"Content-Type": body.content_type})
            self._raise_or_extract(response)  # raises if Joe refused the chunk
        return response
