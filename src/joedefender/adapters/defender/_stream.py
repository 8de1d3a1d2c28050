"""Live response results as bounded chunks: un-gzipped on the fly, capped, never whole in memory."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

from joedefender.adapters._microsoft.errors import DownloadTooLargeError, InvalidResponseError

CHUNK = 1 << 16
_GZIP = 31  # zlib wbits for a gzip header and trailer


def capped(chunks: Iterable[bytes], max_bytes: int, operation: str) -> Iterator[bytes]:
    """The chunks unchanged; DownloadTooLargeError as soon as their total passes `max_bytes`."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise too_large(max_bytes, operation)
        yield chunk


def gunzipped(chunks: Iterable[bytes], max_bytes: int, operation: str) -> Iterator[bytes]:
    """The decompressed bytes of a gzip stream (several members allowed), at most CHUNK at a time.

    The cap applies to the decompressed size, and decompression is bounded per step, so a
    gzip bomb is stopped after `max_bytes`, not after it filled the memory.
    """
    decompressor = zlib.decompressobj(_GZIP)
    total = 0
    started = False
    for chunk in chunks:
        pending = chunk
        while pending:
            started = True
            try:
                out = decompressor.decompress(pending, CHUNK)
            except zlib.error as exc:
                raise InvalidResponseError(f"the result is not valid gzip: {exc}", operation=operation) from None
            if decompressor.eof:
                pending = decompressor.unused_data
                if pending:  # another gzip member follows
                    decompressor = zlib.decompressobj(_GZIP)
            else:
                pending = decompressor.unconsumed_tail
            if out:
                total += len(out)
                if total > max_bytes:
                    raise too_large(max_bytes, operation)
                yield out
    if not started:
        return  # an empty result: nothing was collected
    while not decompressor.eof:  # flush what the last input left behind
        out = decompressor.decompress(b"", CHUNK)
        if not out:
            raise InvalidResponseError("the result's gzip stream is truncated", operation=operation)
        total += len(out)
        if total > max_bytes:
            raise too_large(max_bytes, operation)
        yield out


def too_large(max_bytes: int, operation: str) -> DownloadTooLargeError:
    return DownloadTooLargeError(f"the result is larger than the cap of {max_bytes} bytes", operation=operation)
