"""Client-side rate limits per endpoint family (a group of endpoints that share one documented
quota: the MDE API's, Graph's security API), so we stay under the quotas instead of finding them
by 429s (mde-api.md section 7; coverage.md section 4.4).

Each family has a sliding one-minute and one-hour window. A slot counts from the moment its
request is answered (not when it was sent): the service counts arrivals, and an arrival lies between
the two, so a window measured from the answer can never be shorter than the service's. While a
request is in flight its slot holds the window open.

A 429's Retry-After holds the family for every thread of the process, and, given `SharedHolds`
(bootstrap keeps them in the state store), for every process on the same store too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from joedefender.adapters._windows import wait_for_slot

MINUTE = 60.0
HOUR = 3600.0


@dataclass(frozen=True)
class Rate:
    """A family's documented quota: per minute and, when documented, per hour."""

    per_minute: int
    per_hour: int | None = None


class Limiter(Protocol):
    """What an API client needs from a rate limiter: `RateLimiter` in one process, or a shared one
    (the Azure adapter's, over Tables) for every instance of a tenant. A family is a name
    (Defender's `Family` members are names too)."""

    @property
    def time_scale(self) -> float:
        """Real seconds per documented second."""
        ...

    def acquire(self, family: str) -> None:
        """Block until `family` has a free slot and take it, counted from now."""
        ...

    def slot(self, family: str) -> AbstractContextManager[None]:
        """Block until a slot is free; hold it while the block runs, count it from its end."""
        ...

    def hold(self, family: str, seconds: float) -> None:
        """The service answered 429 with `Retry-After: seconds`: nobody sends to `family` before then."""
        ...

    def wait_needed(self, family: str) -> float:
        """Seconds until `family` may have a free slot (0: now), as far as this limiter knows
        (a shared one: every instance's slots); takes nothing and never blocks, so a caller can
        put its work off instead of holding a worker in `acquire`."""
        ...

    def held(self, family: str) -> float:
        """Seconds a 429 this process met still holds `family` (0 when it is free): asked right
        before a request's first byte goes out, so one that took its slot before the 429 came
        back and is sent after it (a slow connection, a token fetch) waits too."""
        ...


class SharedHolds(Protocol):
    """Retry-After holds shared between processes: family -> end of the hold, in epoch seconds."""

    def held_until(self) -> Mapping[str, float]:
        """The end of every family's hold (ended ones may be listed too)."""
        ...

    def hold(self, family: str, until: float) -> None:
        """Hold `family` until `until` (epoch seconds), unless it is held longer already."""
        ...


# How long a process goes by the shared holds it read before it reads them again (real seconds,
# at most; shorter on a scaled clock): a hold another process set is honoured this late at most.
_SHARED_HOLDS_TTL = 1.0


class _Window:
    """The answered slots of one family (oldest first) and the slots still in flight."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.answered: deque[float] = deque()
        self.in_flight = 0
        self.held_until = 0.0  # a 429's Retry-After, for every thread of the process

    def wait_needed(self, now: float, minute: float, hour: float) -> float:
        """0 when a slot is free now, else how long until one may be (a lower bound)."""
        horizon = hour if self.rate.per_hour is not None else minute
        while self.answered and self.answered[0] <= now - horizon:
            self.answered.popleft()
        wait = max(self.held_until - now, self._wait(now, minute, self.rate.per_minute))
        if self.rate.per_hour is not None:
            wait = max(wait, self._wait(now, hour, self.rate.per_hour))
        return wait

    def _wait(self, now: float, length: float, limit: int) -> float:
        return wait_for_slot(self.answered, self.in_flight, now, length, limit)


class RateLimiter:
    """Per-family sliding windows shared by all threads of a process; a lock guards the state.

    `time_scale` is the number of real seconds per documented second: against an emulator running
    a scaled clock, 0.01 makes "100 a minute" mean 100 per 0.6 real seconds.
    """

    def __init__(
        self,
        rates: Mapping[str, Rate],
        *,
        time_scale: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        shared_holds: SharedHolds | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._minute = MINUTE * time_scale
        self._hour = HOUR * time_scale
        self._windows: dict[str, _Window] = {family: _Window(rate) for family, rate in rates.items()}
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._shared = shared_holds
        self._wall_clock = wall_clock
        self._shared_ttl = min(_SHARED_HOLDS_TTL, max(0.05, time_scale))
        self._shared_read_at: float | None = None  # monotonic time of the last read of the shared holds

    @property
    def time_scale(self) -> float:
        return self._minute / MINUTE

    def acquire(self, family: str) -> None:
        """Block until `family` has a free slot and take it, counted from now."""
        self._take(family)
        with self._lock:
            window = self._windows.get(family)
            if window is not None:
                window.in_flight -= 1
                window.answered.append(self._monotonic())

    @contextmanager
    def slot(self, family: str) -> Iterator[None]:
        """Block until a slot is free; hold it while the block runs (the request is in flight)
        and count it from the moment the block ends (the answer arrived)."""
        self._take(family)
        try:
            yield
        finally:
            with self._lock:
                window = self._windows.get(family)
                if window is not None:
                    window.in_flight -= 1
                    window.answered.append(self._monotonic())

    def hold(self, family: str, seconds: float) -> None:
        """The service answered 429 with `Retry-After: seconds`: no thread (and, with shared holds,
        no process) sends to `family` before then."""
        with self._lock:
            window = self._windows.get(family)
            if window is None:
                return
            window.held_until = max(window.held_until, self._monotonic() + seconds)
        if self._shared is not None:
            self._shared.hold(str(family), self._wall_clock() + seconds)

    def held(self, family: str) -> float:
        with self._lock:
            window = self._windows.get(family)
            return 0.0 if window is None else max(0.0, window.held_until - self._monotonic())

    def wait_needed(self, family: str) -> float:
        self._refresh_shared()
        with self._lock:
            window = self._windows.get(family)
            return 0.0 if window is None else max(0.0, window.wait_needed(self._monotonic(), self._minute, self._hour))

    def _refresh_shared(self) -> None:
        """Adopt the holds other processes set, at most every `_shared_ttl` seconds."""
        if self._shared is None:
            return
        now = self._monotonic()
        with self._lock:
            if self._shared_read_at is not None and now - self._shared_read_at < self._shared_ttl:
                return
            self._shared_read_at = now
        held = self._shared.held_until()
        wall = self._wall_clock()
        with self._lock:
            for family, until in held.items():
                window = self._windows.get(family)
                if window is not None and until > wall:
                    window.held_until = max(window.held_until, now + (until - wall))

    def _take(self, family: str) -> None:
        while True:
            self._refresh_shared()
            with self._lock:
                window = self._windows.get(family)
                if window is None:
                    return
                wait = window.wait_needed(self._monotonic(), self._minute, self._hour)
                if wait <= 0:
                    window.in_flight += 1
                    return
            self._sleep(wait)
