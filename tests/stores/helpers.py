"""What the store tests share: a clock to set by hand, threads started at once, waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Start `count` threads at once (behind a barrier) and return their results in index order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120  # a guard against a hang: the Azure store on Azurite takes
    for thread in threads:  # some 30 s for 200 contended units of work on a busy 2-core machine
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    return results


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)
