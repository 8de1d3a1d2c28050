"""Machine leases that hold across instances: one entity with every live session, check-and-set.

The tenant's cap on concurrent live response sessions needs the count and the lease changed in
one atomic step; keeping all leases in one entity (a few dozen at most) makes every `acquire`
a single ETag-checked replace. A lost race re-reads and tries again.
"""

from __future__ import annotations

import json

from joedefender.adapters.azure._table import Lost, Partition, etag, put, text_of, text_properties
from joedefender.pipeline.ports import StoreUnavailable

_ROW = "sessions"
_ROUNDS = 200


class TableMachineLeases:
    """The `MachineLeases` port on the `machines` partition of the store's table."""

    def __init__(self, partition: Partition) -> None:
        self._partition = partition

    def _read(self) -> tuple[dict[str, tuple[str, float]], str | None]:
        entity = self._partition.get(_ROW)
        if entity is None:
            return {}, None
        leases = {
            machine: (str(owner), float(until)) for machine, (owner, until) in json.loads(text_of(entity)).items()
        }
        return leases, etag(entity)

    def _write(self, leases: dict[str, tuple[str, float]], tag: str | None) -> bool:
        """Replace the leases if nobody changed them since they were read at `tag`."""
        entity = self._partition.entity(_ROW, **text_properties(json.dumps(leases), "the machine leases"))
        try:
            self._partition.submit([put(entity, tag)])
        except Lost:
            return False
        return True

    def acquire(self, machine_id: str, owner: str, now: float, until: float, max_active: int) -> bool:
        if not owner:
            raise ValueError("a machine lease needs an owner")
        for _ in range(_ROUNDS):
            leases, tag = self._read()
            held = leases.get(machine_id)
            if held is not None and held[1] > now:
                if held[0] != owner:
                    return False
            elif sum(1 for _, end in leases.values() if end > now) >= max_active:
                return False  # a new session would exceed the tenant's cap
            live = {machine: lease for machine, lease in leases.items() if lease[1] > now}
            live[machine_id] = (owner, float(until))
            if self._write(live, tag):
                return True
        raise StoreUnavailable("the machine leases changed on every attempt: too much contention")

    def release(self, machine_id: str, owner: str) -> None:
        for _ in range(_ROUNDS):
            leases, tag = self._read()
            held = leases.get(machine_id)
            if held is None or held[0] != owner:
                return
            del leases[machine_id]
            if self._write(leases, tag):
                return
        raise StoreUnavailable("the machine leases changed on every attempt: too much contention")

    def holder(self, machine_id: str, now: float) -> str | None:
        held = self._read()[0].get(machine_id)
        return held[0] if held is not None and held[1] > now else None

    def active(self, now: float) -> int:
        return sum(1 for _, until in self._read()[0].values() if until > now)
