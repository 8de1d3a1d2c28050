"""Logs that stay readable under faults and safe under attack.

`RepeatFilter`: an error repeated every second (a full disk, a store that is gone) is logged once
per window, and the next one says how many were held back. Records below WARNING pass untouched:
they are only shown with -v, when every line is wanted.

`made_safe`: a log line often quotes attacker text (a URL, a file name, an error Defender or Joe
returned). Every record's message is passed through `shown`, so it stays one line, without ESC
sequences or bidi controls, and bounded; a traceback's lines are each made safe and indented
under the record (`SafeFormatter`), so an exception message cannot forge a line of its own. The
CLI puts both on its handler (every logger's records, the connector's and uvicorn's); the Azure
host applies `made_safe` in its log record factory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from joedefender.domain.text import shown

MAX_LOG = 4000  # characters of one log message


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


def made_safe(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message formatted, made safe and bounded (its arguments consumed)."""
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit the template must not lose the record
        message = f"{record.msg} {_arguments(record)}"
    record.msg, record.args = shown(message, MAX_LOG), ()
    return record


class SafeText(logging.Filter):
    """`made_safe` on every record a handler emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        made_safe(record)
        return True


class SafeFormatter(logging.Formatter):
    """Tracebacks with each line made safe and indented under the record it belongs to."""

    def formatException(
        self, ei: tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
    ) -> str:
        return "\n".join("  | " + shown(line, MAX_LOG) for line in super().formatException(ei).splitlines())
