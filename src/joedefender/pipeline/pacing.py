"""When to look again at something a service is doing, and how fast to start new things.

`PollPlan` schedules the next look at a live response action or a Joe analysis from what is
known: how long it has run, the shortest such run seen lately (nothing this process saw finished
sooner, so looking earlier is wasted), and how many others share the poll budget. The gap is at
most max(MIN_GAP, FRACTION of the elapsed time) where the budget allows, so the time between the
service finishing and our noticing stays within max(2 s, 10 % of the service's own time), the
bound issue 13 sets (FRACTION is half of it: the looks are cheap, the comments wait on them).

`StartPace` keeps the starts of live response sessions and of batchUpdates inside their
per-minute budgets without blocking a worker: a job that would wait in the client-side limiter
gets an appointment and is rescheduled to it, and the worker does other work meanwhile (a worker
blocked in the limiter holds up every poll behind it).
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Callable

MIN_GAP = 0.5  # nominal seconds between two looks at the same thing, at the least
FRACTION = 0.05  # of the elapsed time: the most a look may come after the service finished
NEAR = 0.02  # of the elapsed time: the gap near the end that the shortest recent run foretells
_RECENT = 20  # runs remembered per kind for the shortest recent duration
_SHORT = 1 / 6  # of a minute: a wait for the shared budget's turn this short is not put off


class PollPlan:
    """Next-look delays (nominal seconds) for one kind of service work; shared by all jobs."""

    def __init__(self, budget_per_minute: float | None = None) -> None:
        """`budget_per_minute`: the calls a minute these polls may use together (None: no limit
        is documented); with many running at once, each one's gap widens to keep within it."""
        self._budget = budget_per_minute
        self._recent: deque[float] = deque(maxlen=_RECENT)
        self._lock = threading.Lock()

    def finished(self, duration: float) -> None:
        """A run took `duration` nominal seconds from its start to our seeing it finished."""
        with self._lock:
            self._recent.append(max(0.0, duration))

    def next_look(self, elapsed: float, running: int = 1) -> float:
        """Nominal seconds until the next look at a run that started `elapsed` nominal seconds ago,
        with `running` such runs being polled at once."""
        with self._lock:
            shortest = min(self._recent) if self._recent else None
        gap = max(MIN_GAP, FRACTION * elapsed)
        if shortest is not None:
            # Nothing finished faster lately: the first look where the fastest did, less the slack
            # a look may have anyway (so the bound holds for that one too); from there on, runs
            # like it end soon, so the looks are closer (a fiftieth of the elapsed time), widening
            # again with the time past that point.
            early = shortest - max(MIN_GAP, FRACTION * shortest)
            if elapsed + gap < early:
                gap = early - elapsed
            elif elapsed >= early:
                gap = min(gap, max(MIN_GAP, NEAR * elapsed, FRACTION * (elapsed - early)))
        if self._budget:
            gap = max(gap, 60.0 * max(1, running) / self._budget)
        return gap


class StartPace:
    """Appointments for starts, at most `per_minute` in any nominal minute, handed out in order:
    many jobs waiting for a start each get their own time instead of all waking at the next free
    one. In memory: another instance keeps its own (the client-side limiter still holds)."""

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._booked: list[float] = []  # in time order
        self._by_job: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, job: str, now: float, minute: float, elsewhere: Callable[[], float] = lambda: 0.0) -> float:
        """0 when `job` may start now (its appointment has come, or a start is free), else the
        real seconds until its appointment. `minute` is one nominal minute in real seconds.
        `elsewhere`: real seconds until the budget this process shares with others (the client's
        limiter: on Azure, every instance's starts) has a turn; a start it has no turn for gets
        an appointment then, instead of a worker held in the limiter (asked only when this
        process would start now, and outside the lock: it may read the shared budget)."""
        with self._lock:
            would_start = self._would_start(job, now, minute)
        later = elsewhere() if would_start else 0.0
        if later <= minute * _SHORT:
            # Waited in the limiter instead: a job put off goes behind every item due before its
            # new time (in an outbreak, thousands of triages), which costs more than a short wait.
            later = 0.0
        with self._lock:
            del self._booked[: bisect.bisect_right(self._booked, now - minute)]
            booked = self._by_job.pop(job, None)
            if booked is not None and booked > now:
                return self._book(job, booked, now)
            if booked is not None and booked > now - minute:
                if later <= 0:
                    return 0.0  # its appointment: this is its start
                self._booked.remove(booked)
            when = self._next_free(now, minute)
            if when <= now:
                when = now + later
            bisect.insort(self._booked, when)
            return 0.0 if when <= now else self._book(job, when, now)

    def _would_start(self, job: str, now: float, minute: float) -> bool:
        booked = self._by_job.get(job)
        if booked is not None:
            return now - minute < booked <= now
        return self._next_free(now, minute) <= now

    def _next_free(self, now: float, minute: float) -> float:
        """When this process's own budget next has a start free: now, or the minute after the
        start `per_minute` places back."""
        recent = len(self._booked) - bisect.bisect_right(self._booked, now - minute)
        return now if recent < self._per_minute else max(now, self._booked[-self._per_minute] + minute)

    def _book(self, job: str, when: float, now: float) -> float:
        """Keep `job`'s appointment at `when`; the real seconds until it."""
        self._by_job[job] = when
        while len(self._by_job) > 10 * self._per_minute + 1000:  # jobs that never came back
            self._by_job.pop(next(iter(self._by_job)))
        return when - now
