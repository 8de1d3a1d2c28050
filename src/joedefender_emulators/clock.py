"""Emulated time, so a scenario's minutes and hours play out in real seconds.

Every duration in a scenario is in emulated seconds. The clock runs `1 / time_scale` times faster
than real time (time_scale 0.01: one emulated minute takes 0.6 real seconds), and tests can jump
it forward with `advance` instead of waiting.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta


class EmulatedClock:
    """A thread-safe clock that starts at `start` and runs at `1 / time_scale` real speed."""

    def __init__(self, time_scale: float = 1.0, start: datetime | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._start = start or datetime.now(UTC)
        self._real_start = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        """Emulated seconds since the clock started."""
        with self._lock:
            return (time.monotonic() - self._real_start) / self.time_scale + self._offset

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.elapsed())

    def at(self, elapsed: float) -> datetime:
        """The emulated wall time `elapsed` emulated seconds after the start."""
        return self._start + timedelta(seconds=elapsed)

    def elapsed_at(self, moment: datetime) -> float:
        return (moment - self._start).total_seconds()

    def advance(self, seconds: float) -> None:
        """Jump forward; tests use this to reach a scenario's later events without sleeping."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds

    def to_real(self, emulated_seconds: float) -> float:
        return emulated_seconds * self.time_scale

    def retry_after(self, emulated_seconds: float) -> int:
        """A `Retry-After` header value (whole real seconds, at least 1) for an emulated wait."""
        return max(1, math.ceil(self.to_real(emulated_seconds)))
