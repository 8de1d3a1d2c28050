"""The tenant's Defender rate limits, held for every instance at once in Azure Tables.

Defender counts requests per tenant (mde-api.md section 7): a limiter inside one process does
not hold them when the platform runs five instances. Each family has one entity in the `limits`
partition: the times of the requests answered within the last window, the requests in flight
and the Retry-After hold. Taking a slot is an ETag-checked replace of that entity, so two
instances can never both take the last slot. The windows are the in-process `RateLimiter`'s:
a slot counts before its request is sent (in flight, it holds the window open), and from its
answer once answered; an instance that dies with a slot in flight leaves it counted until
`STALE_AFTER`, so its death can only slow the others, never let them exceed the budget.

Each instance keeps the entity as it last read or wrote it, with its ETag, and writes against
that without reading first; a write that finds it changed reads it and tries again. One thread
per family at a time takes slots in an instance (the others wait their turn in the process), so
a budget that frees a slot wakes one taker per instance, not every waiting thread.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from joedefender.adapters._windows import wait_for_slot
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

    def copy(self) -> _Budget:
        return _Budget(list(self.answered), dict(self.in_flight), self.held_until)

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
        return wait_for_slot(self.answered, len(self.in_flight), now, length, limit)


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
        self._known: dict[str, tuple[_Budget, str | None]] = {}  # family -> as last read or written here
        self._known_lock = threading.Lock()
        self._takers: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)  # one per family
        self._held: dict[str, float] = {}  # family -> end of a hold this instance met, before the table has it

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
                self._change(family, _answering(taken))

    def hold(self, family: str, seconds: float) -> None:
        """Defender answered 429 with `Retry-After: seconds`: no instance sends to `family` before
        then. This instance's threads are held at once, the others once the table says so."""
        if str(family) not in self._rates:
            return
        until = self._clock() + seconds
        with self._known_lock:
            self._held[str(family)] = max(self._held.get(str(family), 0.0), until)

        def held(budget: _Budget, now: float) -> bool:
            budget.held_until = max(budget.held_until, until)
            return True

        self._change(family, held)

    def held(self, family: str) -> float:
        """Seconds a 429 this instance met still holds `family` (0 when it is free)."""
        return max(0.0, self._held_here(family, self._clock()))

    def wait_needed(self, family: str) -> float:
        """Seconds until `family` may have a free slot in the budget every instance shares (0:
        now), as stored: one read (what is known here may miss the other instances' slots)."""
        rate = self._rates.get(str(family))
        if rate is None:
            return 0.0
        budget, _ = self._read(family)
        return max(0.0, self._wait(family, rate, budget))

    def _wait(self, family: str, rate: tuple[int, int | None], budget: _Budget) -> float:
        """How long `budget` (pruned here) says to wait for a slot of `family`, holds included."""
        per_minute, per_hour = rate
        minute, hour = MINUTE * self._scale, HOUR * self._scale
        now = self._clock()
        budget.prune(now, hour if per_hour is not None else minute, STALE_AFTER * self._scale)
        wait = max(self._held_here(family, now), budget.held_until - now, budget.wait(now, minute, per_minute))
        if per_hour is not None:
            wait = max(wait, budget.wait(now, hour, per_hour))
        return wait

    def _held_here(self, family: str, now: float) -> float:
        """How long this instance's own hold on `family` still runs."""
        with self._known_lock:
            return self._held.get(str(family), 0.0) - now

    def _take(self, family: str, *, in_flight: bool) -> str | None:
        rate = self._rates.get(str(family))
        if rate is None:
            return None
        with self._takers[str(family)]:
            self._sleep(0)  # a step whose lease was lost while it waited its turn stops here (`Claims.sleep`)
            return self._take_turn(family, rate, in_flight=in_flight)

    def _take_turn(self, family: str, rate: tuple[int, int | None], *, in_flight: bool) -> str:
        """Take a slot (this thread's turn for `family` in this process): write against the
        budget as known here; read it when that is stale, or says to wait (it may be outdated)."""
        slot = uuid.uuid4().hex
        fresh = False
        while True:
            budget, tag = self._read(family) if fresh else self._cached(family)
            now = self._clock()
            here = self._held_here(family, now)
            if here > 0:  # a 429 this instance met, on its way to the table
                self._sleep(here)
                continue
            wait = self._wait(family, rate, budget)
            if wait > 0 and not fresh:
                fresh = True  # as known here: others may have answered since; look before waiting
                continue
            if wait > 0:
                self._sleep(wait)
                continue
            if in_flight:
                budget.in_flight[slot] = now
            else:
                budget.answered.append(now)
            fresh = not self._write(family, budget, tag)
            if fresh:
                continue
            if self._held_here(family, self._clock()) <= 0:
                return slot
            # A 429 arrived while the slot was being written: it is not used, and counts as answered.
            self._change(family, _answering(slot))
            slot = uuid.uuid4().hex

    def _change(self, family: str, change: Callable[[_Budget, float], bool]) -> None:
        fresh = False
        while True:
            budget, tag = self._read(family) if fresh else self._cached(family)
            if not change(budget, self._clock()):
                if fresh:
                    return
                fresh = True  # as known here it needs no change; as stored it may
                continue
            fresh = not self._write(family, budget, tag)
            if not fresh:
                return

    def _cached(self, family: str) -> tuple[_Budget, str | None]:
        """The budget as this instance last read or wrote it (a copy), or as stored now."""
        with self._known_lock:
            known = self._known.get(family)
        if known is None:
            return self._read(family)
        return known[0].copy(), known[1]

    def _keep(self, family: str, budget: _Budget, tag: str | None) -> None:
        with self._known_lock:
            self._known[family] = (budget.copy(), tag)

    def _read(self, family: str) -> tuple[_Budget, str | None]:
        entity = self._partition.get(row_key("rate", family))
        if entity is None:
            budget, tag = _Budget(), None
        else:
            budget, tag = _Budget.of(text_of(entity)), etag(entity)
        self._keep(family, budget, tag)
        return budget, tag

    def _write(self, family: str, budget: _Budget, tag: str | None) -> bool:
        """Replace the family's budget unless another instance changed it since `tag`."""
        entity = self._partition.entity(row_key("rate", family), **text_properties(budget.text(), f"{family} budget"))
        try:
            [result] = self._partition.submit([put(entity, tag)])
        except Lost:
            return False
        self._keep(family, budget, str(result["etag"]))
        return True


def _answering(slot: str) -> Callable[[_Budget, float], bool]:
    return lambda budget, now: _answer(budget, slot, now)


def _answer(budget: _Budget, slot: str, now: float) -> bool:
    """The request of `slot` was answered now (if the slot was not already counted as stale)."""
    if budget.in_flight.pop(slot, None) is None:
        return False
    budget.answered.append(now)
    return True
