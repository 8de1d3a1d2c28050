"""Counting a function's work in executed Python lines, so a linearity test does not depend on the clock."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any


def lines_run(fn: Callable[..., Any], *args: Any) -> int:
    """How many Python lines `fn(*args)` executes (its callees' included); exceptions are swallowed."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn(*args)
    except Exception:  # noqa: S110 - the work done until the error is what is counted
        pass
    finally:
        sys.settrace(previous)
    return count


def assert_linear(
    fn: Callable[[str], Any], hostile: Callable[[int], str], small: int = 2_000, big: int = 32_000
) -> None:
    """`fn` on a 16 times longer hostile input does at most about 16 times the work (quadratic would be 256)."""
    small_work = lines_run(fn, hostile(small))
    big_work = lines_run(fn, hostile(big))
    assert small_work > 0
    assert big_work <= 17 * small_work, (small_work, big_work)
