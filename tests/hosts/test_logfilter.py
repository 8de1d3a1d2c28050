"""Repeated identical errors are rate-limited with a count; different ones and debug lines pass."""

from __future__ import annotations

import logging

import pytest

from joedefender.hosts.logfilter import RepeatFilter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logged() -> tuple[logging.Logger, list[str], _Clock]:
    clock = _Clock()
    lines: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = _Collect()
    handler.addFilter(RepeatFilter(window=60, clock=clock))
    logger = logging.getLogger("test.repeat")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, lines, clock


def test_a_repeated_error_is_logged_once_per_window_then_with_its_count(
    logged: tuple[logging.Logger, list[str], _Clock],
) -> None:
    logger, lines, clock = logged
    for _ in range(2400):  # a full disk under two workers for three minutes
        logger.error("worker %s could not run a step", "w-1")
        clock.now += 0.075
    assert len(lines) == 3, lines
    assert lines[0] == "worker w-1 could not run a step"
    assert "more like this in the last 60 s" in lines[1]
    held = int(lines[1].rsplit("[", 1)[1].split()[0])
    assert held == 799


def test_different_errors_and_debug_lines_are_not_held_back(logged: tuple[logging.Logger, list[str], _Clock]) -> None:
    logger, lines, _ = logged
    logger.error("store gone: %s", "a")
    logger.error("store gone: %s", "b")
    logger.warning("store gone: %s", "a")
    for _ in range(3):
        logger.debug("client hung up")
    assert lines == ["store gone: a", "store gone: b", "store gone: a", *["client hung up"] * 3]
