"""Emulated time, so a scenario's minutes and hours play out in real seconds.

Every duration in a scenario is in emulated seconds. The clock's timeline (`elapsed`) runs
`1 / time_scale` times faster than real time (time_scale 0.01: one emulated minute takes 0.6 real
seconds), and tests can jump it forward with `advance` instead of waiting.

The wall-clock times the emulators show (alert and action timestamps, comment times) are anchored
to the real clock: at the start they are the real time, and they move on with it, so a connector
running on the real clock (`joedefender run --time-scale 0.01`) sees the emulators' "now" as its
own present, not hours ahead. A scenario's run is compressed on the wall clock as it is on the
connector's side (an emulated minute of the run is 0.6 s of wall time at time_scale 0.01), while
`advance` jumps both the timeline and the wall clock by the same amount (a test skipping a day
reaches the next day). Times before the start (a scenario's history: analyses `age_days` old, a
machine first seen a month ago) are calendar time, one emulated second per wall second.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta


class EmulatedClock:
    """A thread-safe clock whose timeline starts at 0 and runs at `1 / time_scale` real speed, and
    whose wall clock starts at `start` (default: the real time now) and runs with the real one."""

    def __init__(self, time_scale: float = 1.0, start: datetime | None = None, *, stepped: bool = False) -> None:
        """`stepped`: the timeline moves only by `advance` (tests that step an emulator by hand
        assert on exact positions, which real time passing under load would shift)."""
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._stepped = stepped
        self._start = start or datetime.now(UTC)
        self._real_start = time.monotonic()
        self._offset = 0.0
        # (timeline position, seconds) of every advance: those stretches are 1:1 on the wall clock
        self._jumps: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    @property
    def start(self) -> datetime:
        """The wall-clock time at emulated second 0 (the real time when the clock was made)."""
        return self._start

    def elapsed(self) -> float:
        """Emulated seconds since the clock started."""
        with self._lock:
            return self._run() + self._offset

    def _run(self) -> float:
        """Emulated seconds the clock has run on its own (none when stepped)."""
        return 0.0 if self._stepped else (time.monotonic() - self._real_start) / self.time_scale

    def now(self) -> datetime:
        """The emulators' wall-clock time: the real time, plus whatever `advance` skipped."""
        return self.at(self.elapsed())

    def at(self, elapsed: float) -> datetime:
        """The wall-clock time at emulated second `elapsed` of the timeline.

        Before 0 it is calendar time; after 0 the run's own seconds are compressed by time_scale
        and the skipped stretches count in full. A moment still ahead maps as if nothing is
        skipped until then: things that expire are checked on the timeline, not on this.
        """
        if elapsed <= 0:
            return self._start + timedelta(seconds=elapsed)
        with self._lock:
            skipped = sum(min(max(elapsed - at, 0.0), seconds) for at, seconds in self._jumps)
        return self._start + timedelta(seconds=(elapsed - skipped) * self.time_scale + skipped)

    def elapsed_at(self, moment: datetime) -> float:
        """The timeline second at which the wall clock showed `moment`: the inverse of `at`."""
        wall = (moment - self._start).total_seconds()
        if wall <= 0:
            return wall
        with self._lock:
            jumps = sorted(self._jumps)
        position = shown = 0.0
        for at, seconds in jumps:
            stretch = (at - position) * self.time_scale  # the run's own seconds, compressed
            if shown + stretch >= wall:
                break
            shown, position = shown + stretch, at
            if shown + seconds >= wall:  # inside a skipped stretch: 1:1
                return position + (wall - shown)
            shown, position = shown + seconds, at + seconds
        return position + (wall - shown) / self.time_scale

    def advance(self, seconds: float) -> None:
        """Jump forward; tests use this to reach a scenario's later events without sleeping."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            position = self._run() + self._offset
            self._jumps.append((position, seconds))
            self._offset += seconds

    def to_real(self, emulated_seconds: float) -> float:
        return emulated_seconds * self.time_scale

    def retry_after(self, emulated_seconds: float) -> int:
        """A `Retry-After` header value (whole real seconds, at least 1) for an emulated wait."""
        return max(1, math.ceil(self.to_real(emulated_seconds)))
