"""The built-in poller's thread: one poll of Defender (`Application.poll`) every interval, until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from joedefender.pipeline.facade import Application

logger = logging.getLogger("joedefender.poller")


class Poller:
    def __init__(
        self,
        app: Application,
        *,
        interval: float,
        lookback: timedelta,
        on_new: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`clock` is the poller's idea of Defender's time; the window [since, now) is on it."""
        self._app = app
        self._clock = clock
        self._interval = interval
        self._lookback = lookback
        self._on_new = on_new
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> int:
        """One poll; returns how many new alerts it took in."""
        new = self._app.poll(self._clock(), self._lookback)
        if new:
            self._on_new()
        return new

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # a failed poll is retried at the next tick
                logger.exception("poll failed")
            self._stop.wait(self._interval)
