"""The fastest an outbreak can be enriched under the documented limits and the scenario's service times.

Computed from the numbers the MDE emulator enforces (its rate limits and its 25 live response
sessions) and the scenario's service times, for a connector that wastes nothing: every sample's
live response starts as soon as the runliveresponse budget (10 a minute) and the session cap
allow, the sample goes to Joe the moment the action ends, and each sample's alerts get their
comment by one batchUpdate (10 a minute, 500 an hour) as soon as its analysis is finished. Reads
(the poll, the machines, the action's status and download link) are left out: they have a
budget of their own that a sample needs one or two calls of. The result is a lower bound: no
connector can have the last comment written earlier.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from joedefender_emulators.mde.liveresponse import MAX_SESSIONS
from joedefender_emulators.mde.ratelimit import LIMITS, Limit
from joedefender_emulators.scenario import Scenario

ALERTS_PER_BATCH = 500  # the connector's batchUpdate size (docs silent on a maximum)


def admit(
    ready: Sequence[float],
    limits: Sequence[Limit],
    *,
    sessions: int = 0,
    duration: float = 0.0,
    admitted: list[float] | None = None,
    ends: list[float] | None = None,
) -> list[float]:
    """When each request (in order of `ready`) is admitted at the earliest under sliding-window
    `limits` and, with `sessions`, at most that many running for `duration` each. `admitted` and
    `ends` carry the requests admitted before (and are extended), for a later stage."""
    admitted = [] if admitted is None else admitted
    ends = [] if ends is None else ends
    starts: list[float] = []
    for when in sorted(ready):
        t = when
        for limit in limits:
            if len(admitted) >= limit.count:
                t = max(t, admitted[-limit.count] + limit.window)
        if sessions:
            running = [end for end in ends if end > t]
            if len(running) >= sessions:
                t = max(t, sorted(running)[len(running) - sessions])
        bisect.insort(admitted, t)
        ends.append(t + duration)
        starts.append(t)
    return starts


def outbreak_bound(scenario: Scenario, alerts_per_sample: Sequence[int], *, actions_per_sample: int = 1) -> float:
    """Emulated seconds from intake to the last comment, at the least; each sample's file takes
    `actions_per_sample` live response actions, one after the other."""
    timings = scenario.defender.live_response
    action = timings.pending_seconds + timings.command_seconds
    analysis = scenario.joe.queue_seconds + scenario.joe.analysis_seconds
    admitted: list[float] = []
    ends: list[float] = []
    ready = [0.0] * len(alerts_per_sample)
    for _ in range(actions_per_sample):
        starts = admit(
            ready, LIMITS["liveresponse.run"], sessions=MAX_SESSIONS, duration=action, admitted=admitted, ends=ends
        )
        ready = [start + action for start in starts]
    finished = [done + analysis for done in ready]
    batches = [
        done for done, alerts in zip(finished, alerts_per_sample, strict=True)
        for _ in range(math.ceil(alerts / ALERTS_PER_BATCH))
    ]  # fmt: skip
    comments = admit(batches, LIMITS["alerts.batchUpdate"])
    return max(comments, default=0.0)
