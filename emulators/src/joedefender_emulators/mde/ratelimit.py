"""The documented per-endpoint request quotas (mde-api.md section 7), per app, on the emulated clock.

Each documented endpoint has its own budget (every endpoint page states its own limit; docs
silent on whether they share one). Windows slide: a request is admitted when fewer than `count`
admitted requests fall in the last `window` emulated seconds. Refused requests do not use a slot,
so `Retry-After` says exactly when one frees.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.http import ApiError

MINUTE = 60.0
HOUR = 3600.0


@dataclass(frozen=True)
class Limit:
    count: int
    window: float


_STANDARD = (Limit(100, MINUTE), Limit(1500, HOUR))

LIMITS: Mapping[str, tuple[Limit, ...]] = {
    "alerts.list": _STANDARD,
    "alerts.get": _STANDARD,
    "alerts.update": _STANDARD,
    "alerts.batchUpdate": (Limit(10, MINUTE), Limit(500, HOUR)),
    "machines.get": _STANDARD,
    "machines.list": _STANDARD,
    "machineactions.list": _STANDARD,
    "machineactions.get": _STANDARD,
    "machineactions.cancel": _STANDARD,
    "liveresponse.run": (Limit(10, MINUTE),),
    "liveresponse.downloadLink": _STANDARD,
    "libraryfiles.upload": _STANDARD,
    "libraryfiles.list": _STANDARD,
    "libraryfiles.delete": _STANDARD,
    "indicators.submit": _STANDARD,
    "indicators.list": _STANDARD,
    "indicators.delete": _STANDARD,
    "indicators.import": (Limit(30, MINUTE),),
    "indicators.batchDelete": (Limit(30, MINUTE), Limit(1500, HOUR)),
}


def too_many_requests(clock: EmulatedClock, wait: float, message: str) -> ApiError:
    """A 429 whose Retry-After is in real seconds, as the client will wait them."""
    return ApiError(429, "TooManyRequests", message, {"Retry-After": str(clock.retry_after(wait))})


class RateLimiter:
    """Thread-safe sliding-window counters keyed by (app, endpoint, window); `limits` are the
    budgets by endpoint name (the MDE API's by default; the Graph emulator gives its own)."""

    def __init__(
        self, clock: EmulatedClock, enabled: bool = True, limits: Mapping[str, tuple[Limit, ...]] = LIMITS
    ) -> None:
        self._clock = clock
        self.enabled = enabled
        self._limits = limits
        self._lock = threading.Lock()
        self._admitted: dict[tuple[str, str, float], deque[float]] = {}

    def check(self, app: str, endpoint: str) -> None:
        """Admit the request or raise 429 `TooManyRequests` with Retry-After."""
        if not self.enabled:
            return
        limits = self._limits.get(endpoint, ())
        with self._lock:
            now = self._clock.elapsed()
            wait = 0.0
            for limit in limits:
                times = self._window(app, endpoint, limit, now)
                if len(times) >= limit.count:
                    wait = max(wait, times[len(times) - limit.count] + limit.window - now)
            if wait > 0:
                first = next(lim for lim in limits if len(self._admitted[(app, endpoint, lim.window)]) >= lim.count)
                raise too_many_requests(
                    self._clock,
                    wait,
                    f"Rate limit exceeded: {endpoint} allows {first.count} calls per "
                    f"{_window_name(first.window)} per application. Retry later.",
                )
            for limit in limits:
                self._admitted[(app, endpoint, limit.window)].append(now)

    def _window(self, app: str, endpoint: str, limit: Limit, now: float) -> deque[float]:
        times = self._admitted.setdefault((app, endpoint, limit.window), deque())
        while times and times[0] <= now - limit.window:
            times.popleft()
        return times


def _window_name(seconds: float) -> str:
    return "minute" if seconds == MINUTE else "hour"
