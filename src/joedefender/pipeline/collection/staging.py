"""Where a collected sample waits between Defender and Joe: a spooled temporary file.

Small samples stay in memory; larger ones go to an anonymous temporary file that the OS has
already unlinked, so nothing is left on disk even if the process is killed. The bytes are hashed
while they arrive and the file is gone as soon as the staging is closed.

A `check` given (the step's lease check) runs before every chunk written and every read of the
upload, so a transfer that outlived its lease stops at its next chunk rather than send a sample
its successor sends too.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from joedefender.domain.errors import JoeDefenderError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_IN_MEMORY = 8 * 1024 * 1024
_READ_SIZE = 1024 * 1024  # a read of the upload, and so how often it checks


class SampleTooLargeError(JoeDefenderError):
    """The sample is larger than the configured cap."""


def _unchecked() -> None:
    return None


class _CheckedReads(io.RawIOBase):
    """The staged file, with `check` run before every read."""

    def __init__(self, file: tempfile.SpooledTemporaryFile[bytes], check: Callable[[], None]) -> None:
        super().__init__()
        self._file = file
        self._check = check

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        self._check()
        return self._file.readinto(buffer)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:  # the staging keeps ownership of the file
        super().close()


class SampleStaging:
    def __init__(self, max_bytes: int, check: Callable[[], None] = _unchecked) -> None:
        self._max_bytes = max_bytes
        self._check = check
        self._file = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY, suffix=".bin")  # noqa: SIM115
        self._sha256 = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._check()
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise SampleTooLargeError(f"the sample exceeds the {self._max_bytes} byte limit")
        self._sha256.update(chunk)
        self._file.write(chunk)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def reader(self) -> BinaryIO:
        """The staged bytes from the start (the staging keeps ownership; do not close it)."""
        self._file.seek(0)
        if self._check is _unchecked:
            return self._file  # type: ignore[return-value]
        return io.BufferedReader(_CheckedReads(self._file, self._check), _READ_SIZE)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SampleStaging:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
