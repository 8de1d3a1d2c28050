"""The sliding-window arithmetic of the Defender rate limits, shared by the in-process limiter
and the Azure adapter's shared budget, so both count a window the same way."""

from __future__ import annotations

from collections.abc import Iterable


def wait_for_slot(answered: Iterable[float], in_flight: int, now: float, length: float, limit: int) -> float:
    """0 when one more request fits in the window of `length` seconds ending now, else how long
    until one may (a lower bound). `answered`: when requests were answered, oldest first;
    `in_flight`: requests sent and not answered yet, which count until they are."""
    recent = [t for t in answered if t > now - length]
    excess = len(recent) + in_flight - limit + 1
    if excess <= 0:
        return 0.0
    if excess > len(recent):  # only in-flight slots block: they end no sooner than a window from now
        return length
    return recent[excess - 1] + length - now
