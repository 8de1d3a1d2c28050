"""The tenant's Defender rate limits, held for every instance at once in Azure Tables.

Defender counts requests per tenant (mde-api.md section 7): a limiter inside one process does
not hold them when the platform runs five instances. Each family has one entity in the `limits`
partition: the times of the requests answered within the last window, the requests in flight
and the Retry-After hold. Taking a slot is an ETag-checked replace of that entity, so two
instances can never both take the last slot. The windows are the in-process `RateLimiter`'s:
a slot counts from its answer, and holds the window open while in flight.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from joedefender.adapters.azure._table import Lost, Partition, etag, put, row_key, text_of, text_properties

MINUTE = 60.0
HOUR = 3600.0
STALE_AFTER = 600.0  # seconds (documented time) after which a slot still in flight is counted as
# answered: its instance died with it. Longer than any request the Defender client lets run.


@dataclass
class _Budget:
    """One family's shared state, as stored."""

    answered: list[float] = field(default_factory=list)
    in_flight: dict[str, float] = field(default_factory=dict)  # slot id -> when it was taken
    held_until: float = 0.0

    def text(self) -> str:
        return json.dumps({"answered": self.answered, "in_flight": self.in_flight, "held_until": self.held_until})

    @classmethod
    def of(cls, text: str) -> _Budget:
        data = json.loads(text)
        return cls(list(data["answered"]), dict(data["in_flight"]), float(data["held_until"]))

    def prune(self, now: float, horizon: float, stale: float) -> None:
        for slot, taken in list(self.in_flight.items()):
            if taken <= now - stale:
                del self.in_flight[slot]
                self.answered.append(taken + stale)
        self.answered = sorted(t for t in self.answered if t > now - horizon)

    def wait(self, now: float, length: float, limit: int) -> float:
        """0 when a slot is free in this window, else how long until one may be."""
        recent = [t for t in self.answered if t > now - length]
        excess = len(recent) + len(self.in_flight) - limit + 1
        if excess <= 0:
            return 0.0
        if excess > len(recent):  # only in-flight slots block: they end no sooner than a window from now
            return length
        return recent[excess - 1] + length - now


class TableRateLimiter:
    """The Defender client's `Limiter`, with one budget per family shared through a table.

    `rates` maps a family to (per minute, per hour or None). `time_scale` is real seconds per
    documented second, as for `RateLimiter`. The clock is the wall clock: instances share it.
    """

    def __init__(
        self,
        partition: Partition,
        rates: Mapping[str, tuple[int, int | None]],
        *,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._partition = partition
        self._rates = {str(family): rate for family, rate in rates.items()}
        self._scale = time_scale
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"TableRateLimiter({self._partition.table.table_name!r}, {len(self._rates)} families)"

    @property
    def time_scale(self) -> float:
        return self._scale

    def acquire(self, family: str) -> None:
        """Block until `family` has a free slot and take it, counted from now."""
        self._take(family, in_flight=False)

    @contextmanager
    def slot(self, family: str) -> Iterator[None]:
        """Take a slot, hold it while the block runs and count it from when the block ends."""
        taken = self._take(family, in_flight=True)
        try:
            yield
        finally:
            if taken is not None:
                self._change(family, lambda budget, now: _answer(budget, taken, now))

    def hold(self, family: str, seconds: float) -> None:
        """Defender answered 429 with `Retry-After: seconds`: no instance sends to `family` before then."""
        if str(family) not in self._rates:
            return

        def held(budget: _Budget, now: float) -> bool:
            budget.held_until = max(budget.held_until, now + seconds)
            return True

        self._change(family, held)

    def _take(self, family: str, *, in_flight: bool) -> str | None:
        rate = self._rates.get(str(family))
        if rate is None:
            return None
        per_minute, per_hour = rate
        minute, hour = MINUTE * self._scale, HOUR * self._scale
        slot = uuid.uuid4().hex
        while True:
            budget, tag = self._read(family)
            now = self._clock()
            budget.prune(now, hour if per_hour is not None else minute, STALE_AFTER * self._scale)
            wait = max(budget.held_until - now, budget.wait(now, minute, per_minute))
            if per_hour is not None:
                wait = max(wait, budget.wait(now, hour, per_hour))
            if wait > 0:
                self._sleep(wait)
                continue
            if in_flight:
                budget.in_flight[slot] = now
            else:
                budget.answered.append(now)
            if self._write(family, budget, tag):
                return slot

    def _change(self, family: str, change: Callable[[_Budget, float], bool]) -> None:
        while True:
            budget, tag = self._read(family)
            if not change(budget, self._clock()) or self._write(family, budget, tag):
                return

    def _read(self, family: str) -> tuple[_Budget, str | None]:
        entity = self._partition.get(row_key("rate", family))
        if entity is None:
            return _Budget(), None
        return _Budget.of(text_of(entity)), etag(entity)

    def _write(self, family: str, budget: _Budget, tag: str | None) -> bool:
        """Replace the family's budget unless another instance changed it since `tag`."""
        entity = self._partition.entity(row_key("rate", family), **text_properties(budget.text(), f"{family} budget"))
        try:
            self._partition.submit([put(entity, tag)])
        except Lost:
            return False
        return True


def _answer(budget: _Budget, slot: str, now: float) -> bool:
    """The request of `slot` was answered now (if the slot was not already counted as stale)."""
    if budget.in_flight.pop(slot, None) is None:
        return False
    budget.answered.append(now)
    return True
