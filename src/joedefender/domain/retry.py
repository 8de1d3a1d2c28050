"""One retry policy for every layer: how many tries, how long in total, how long between them.

The Defender and Joe adapters retry a call under it (honouring a `Retry-After` hint where the
service gives one), and the engine backs a failing step off with it. Kept here rather than taken
from `stamina` or azure-core: both retry by calling a function again, while the Defender
transport must wait out a 429's `Retry-After` inside the same budget, refuse to blindly repeat a
write that may have landed, and run on an injected clock and sleep so the tests and the scaled
emulator clock never wait in real time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Jitter = Literal["none", "full", "equal"]


@dataclass(frozen=True)
class RetryPolicy:
    """`max_retries` retries after the first attempt, none starting after `budget` seconds.

    The wait before retry `n` (1-based) grows as `first * 2**(n-1)` up to `cap`; `jitter`
    spreads it: "full" is uniform in [0, wait], "equal" is half fixed and half random, so
    many workers that failed together do not retry together.
    """

    max_retries: int = 3
    budget: float = 300.0
    first: float = 1.0
    cap: float = 60.0
    jitter: Jitter = "equal"

    def ceiling(self, retry: int) -> float:
        return min(self.cap, self.first * 2.0 ** max(0, retry - 1))

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        wait = self.ceiling(retry)
        if self.jitter == "full":
            return rand() * wait
        if self.jitter == "equal":
            return wait / 2 + rand() * wait / 2
        return wait
