"""Where a collected sample waits between Defender and Joe: a spooled temporary file.

Small samples stay in memory; larger ones go to an anonymous temporary file that the OS has
already unlinked, so nothing is left on disk even if the process is killed. The bytes are hashed
while they arrive and the file is gone as soon as the staging is closed.
"""

from __future__ import annotations

import hashlib
import tempfile
from typing import BinaryIO

from joedefender.domain.errors import JoeDefenderError

_IN_MEMORY = 8 * 1024 * 1024


class SampleTooLargeError(JoeDefenderError):
    """The sample is larger than the configured cap."""


class SampleStaging:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._file = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY, suffix=".bin")  # noqa: SIM115
        self._sha256 = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
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
        return self._file  # type: ignore[return-value]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SampleStaging:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
