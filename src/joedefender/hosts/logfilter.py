"""Logs that stay readable under faults: an error repeated every second (a full disk, a store
that is gone) is logged once per window, and the next one says how many were held back.

A filter on the handler, so it sees every logger's records, the connector's and uvicorn's.
Records below WARNING pass untouched: they are only shown with -v, when every line is wanted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RepeatFilter(logging.Filter):
    """Let one record per (logger, level, message template, arguments) through per `window`
    seconds; the first after a window in which some were held back carries their count."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str, str], tuple[float, int]] = {}  # key: (window start, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg), _arguments(record))
        now = self._clock()
        with self._lock:
            if len(self._seen) > 1000:  # bounded memory whatever the variety of messages
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self._window}
            started, held = self._seen.get(key, (float("-inf"), 0))
            if now - started < self._window:
                self._seen[key] = (started, held + 1)
                return False
            self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {self._window:g} s]"
        return True


def _arguments(record: logging.LogRecord) -> str:
    try:
        return repr(record.args)
    except Exception:  # a repr that fails must not lose the record
        return ""
