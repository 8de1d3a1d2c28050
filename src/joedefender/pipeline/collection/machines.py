"""Machines as Defender lists them (online or not, their osPlatform and agent): read once per
machine per short window, shared by every job.

In an outbreak many sample jobs carry the same machines, and each try of each job used to GET
every candidate machine: a fifth of all Defender calls. Here the machines a job needs that were
not read within `WINDOW` nominal seconds are read together, in one list call (the adapter splits
a long list to fit the URL), and every job of the process takes the answer from there. A
machine Defender does not list is offline (unknown, or no longer reporting).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from joedefender.domain.liveresponse import Machine
from joedefender.pipeline.context import Context

WINDOW = 30.0  # nominal seconds a machine's health is taken as still true (the action poll's spacing)


class MachineHealth:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._known: dict[str, tuple[Machine | None, float]] = {}
        # Held across the read, so that jobs asking at the same time make one call, not several.
        self._lock = threading.Lock()

    def machines(self, machine_ids: Iterable[str]) -> dict[str, Machine | None]:
        """Each machine as Defender lists it (None: not listed), from a read of the last WINDOW
        nominal seconds or a new one. Its osPlatform and agent version come with it."""
        ids = list(dict.fromkeys(machine_ids))
        with self._lock:
            oldest = self._ctx.now() - self._ctx.clock.real(WINDOW)
            stale = [m for m in ids if m not in self._known or self._known[m][1] < oldest]
            if stale:
                found = {m.id.lower(): m for m in self._ctx.defender.get_machines(stale)}
                at = self._ctx.now()
                for machine_id in stale:
                    self._known[machine_id] = (found.get(machine_id.lower()), at)
            return {m: self._known[m][0] for m in ids}

    def online(self, machine_ids: Iterable[str]) -> dict[str, bool]:
        """Each machine's health (one Defender does not list is offline)."""
        return {m: machine is not None and machine.online for m, machine in self.machines(machine_ids).items()}
