"""Sample uploads that stream: jbxapi's requests, without holding a sample or a chunk in memory.

jbxapi 3.25 posts a sample (whole, or in 10 MiB chunks) through requests' `files=`, which builds
the multipart body in memory: the sample or chunk read whole, then copied twice more into the
body (some 40 MiB at once for each chunk of a large sample, so two uploads of any size took the
connector from 85 to 200 MB). Here every body with a file part is streamed from the file
(requests-toolbelt's MultipartEncoder over a window of it), in the form requests gives it: the
same fields (lists repeated, None left out) and the same file parts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import IO, Any

import jbxapi
import requests
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

    @classmethod
    def rest_of(cls, file: IO[bytes]) -> Window:
        """From where the file is to its end."""
        start = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(start)
        return cls(file, start, end - start)

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
    """`jbxapi.JoeSandbox` whose uploads stream (everything else is jbxapi's own)."""

    def _post(self, url: str, data: Any = None, **kwargs: Any) -> Any:
        files = kwargs.pop("files", None)
        if not files:
            return super()._post(url, data=data, **kwargs)
        body = MultipartEncoder([*_fields(data or {}), *_files(files)])
        headers = {**kwargs.pop("headers", {}), "Content-Type": body.content_type}
        return super()._post(url, data=body, headers=headers, **kwargs)

    def _chunked_upload(self, url: str, f: IO[bytes], params: dict[str, Any]) -> Any:
        """jbxapi's chunks, each posted as a window of the sample, never read into memory."""
        whole = Window.rest_of(f)
        start, size = f.tell(), len(whole)
        fields = dict(params) | {"file-size": size, "chunk-size": CHUNK_SIZE}
        fields["chunk-count"] = math.ceil(size / CHUNK_SIZE)
        response = None
        for index, offset in enumerate(range(0, size, CHUNK_SIZE), start=1):
            length = min(CHUNK_SIZE, size - offset)
            chunk = {"current-chunk-index": index, "current-chunk-size": length}
            part = {"chunk": Window(f, start + offset, length)}
            response = self._post(self.apiurl + url, data=fields | chunk, files=part)
            self._raise_or_extract(response)  # raises if Joe refused the chunk
        return response


def _fields(data: Mapping[str, Any]) -> list[tuple[str, str | bytes]]:
    """Form fields as requests makes them: a list or tuple is the field repeated; None is left out."""
    found: list[tuple[str, str | bytes]] = []
    for name, value in data.items():
        values: Iterable[Any] = value if isinstance(value, list | tuple) else [value]
        found += [(name, v if isinstance(v, bytes) else str(v)) for v in values if v is not None]
    return found


def _files(files: Mapping[str, Any]) -> list[tuple[str, tuple[str, Window] | tuple[str, Window, str]]]:
    """File parts as requests makes them ((name, file), or with its type), each a window of its file."""
    found: list[tuple[str, tuple[str, Window] | tuple[str, Window, str]]] = []
    for name, value in files.items():
        if isinstance(value, list | tuple):
            filename, file, *rest = value
        else:
            filename, file, rest = requests.utils.guess_filename(value) or name, value, []  # type: ignore[no-untyped-call]
        window = file if isinstance(file, Window) else Window.rest_of(file)
        found.append((name, (filename, window, rest[0])) if rest and rest[0] else (name, (filename, window)))
    return found
