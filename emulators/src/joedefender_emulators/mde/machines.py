"""Machines as the API shows them: scenario fields plus a healthStatus that follows the
scenario's online schedule on the emulated clock."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.mde.common import format_time
from joedefender_emulators.mde.odata import Field, Kind, fields
from joedefender_emulators.scenario import Machine

FILTERABLE: dict[str, Field] = {
    **fields(
        Kind.STRING,
        "computerDnsName", "id", "version", "deviceValue", "aadDeviceId", "exposureLevel",
        "onboardingStatus", "lastIpAddress", "healthStatus", "osPlatform", "riskScore",
    ),
    **fields(Kind.DATETIME, "lastSeen"),
    **fields(Kind.NUMBER, "rbacGroupId"),
}  # fmt: skip

# Fields the schedule and the scenario's own columns decide; `extra` cannot override them.
_FIXED = ("id", "computerDnsName", "osPlatform", "healthStatus", "agentVersion")


class MachineDirectory:
    def __init__(self, machines: Sequence[Machine], clock: EmulatedClock) -> None:
        self._machines = list(machines)
        self._clock = clock

    def __bool__(self) -> bool:
        return bool(self._machines)

    def all(self) -> list[Machine]:
        return list(self._machines)

    def by_id(self, machine_id: str) -> Machine | None:
        wanted = machine_id.lower()
        return next((m for m in self._machines if m.id.lower() == wanted), None)

    def find(self, id_or_name: str) -> Machine | None:
        """By machine id or computer DNS name (get-machine-by-id.md accepts both)."""
        wanted = id_or_name.lower()
        return self.by_id(id_or_name) or next(
            (m for m in self._machines if m.computer_dns_name.lower() == wanted), None
        )

    def render(self, machine: Machine) -> dict[str, Any]:
        elapsed = self._clock.elapsed()
        online = machine.is_online(elapsed)
        seed = hashlib.sha256(machine.id.encode()).digest()
        document: dict[str, Any] = {
            "id": machine.id,
            "computerDnsName": machine.computer_dns_name,
            "firstSeen": format_time(self._clock.at(-30 * 86400.0)),
            "lastSeen": format_time(self._clock.at(_last_seen(machine, elapsed))),
            "osPlatform": machine.os_platform,
            "onboardingStatus": "Onboarded",
            "osArchitecture": "64-bit",
            "version": "22H2",
            "osBuild": 22621,
            "lastIpAddress": f"10.0.{seed[0]}.{seed[1] or 1}",
            "lastExternalIpAddress": f"203.0.113.{seed[2] or 1}",
            "healthStatus": "Active" if online else "Inactive",
            "rbacGroupName": None,
            "rbacGroupId": None,
            "riskScore": "None",
            "exposureLevel": "Low",
            "deviceValue": "Normal",
            "isAadJoined": True,
            "aadDeviceId": str(uuid.UUID(bytes=seed[:16])),
            "machineTags": [],
            "ipAddresses": [],
        }
        if machine.agent_version is not None:
            document["agentVersion"] = machine.agent_version
        document.update({k: v for k, v in machine.extra.items() if k not in _FIXED})
        return document


def _last_seen(machine: Machine, elapsed: float) -> float:
    """When the machine last reported: the start of its current online period, else the end of
    its last one (docs: a full report about daily; a stable value is what matters here)."""
    if isinstance(machine.online, bool):
        return -3600.0
    current = [w.start for w in machine.online if w.start <= elapsed and (w.end is None or elapsed < w.end)]
    if current:
        return max(current)
    ends = [w.end for w in machine.online if w.end is not None and w.end <= elapsed]
    return max(ends) if ends else -86400.0
