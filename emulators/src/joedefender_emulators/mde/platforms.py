"""Which operating system an emulated machine runs, from its scenario `osPlatform`.

Written independently of the connector's own classification (`joedefender.domain.platforms`):
the emulator's rule is the simplest one the sources allow (coverage.md section 1.1): a value
starting with "windows" is Windows, one starting with "mac" or "osx" is macOS, the mobile platforms
are none that live response reaches, and any other onboarded value is a Linux distribution's name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from joedefender_emulators.scenario import Machine

Os = Literal["windows", "linux", "macos"]
# Where live response drops PutFile's library files (docs: "a working folder"; on Linux and macOS
# where is not documented: the emulator's choice).
PUTFILE_FOLDERS: dict[Os, str] = {
    "windows": r"C:\ProgramData\Microsoft\Windows Defender Advanced Threat Protection\Downloads",
    "linux": "/var/opt/microsoft/mdatp/downloads",
    "macos": "/Library/Application Support/Microsoft/Defender/downloads",
}
# PutFile takes at most 300 MB on Windows and 10 MB elsewhere (live-response.md).
PUTFILE_LIMITS: dict[Os, int] = {"windows": 300 * 1024 * 1024, "linux": 10 * 1024 * 1024, "macos": 10 * 1024 * 1024}
# The oldest agents live response runs on (live-response.md).
MIN_AGENTS: dict[Os, tuple[int, ...]] = {"linux": (101, 45, 13), "macos": (101, 43, 84)}
_MOBILE = ("ios", "ipados", "android")


def machine_os(os_platform: str) -> Os | None:
    """The machine's operating system; None for a platform live response does not reach."""
    key = re.sub(r"[^a-z0-9]", "", os_platform.lower())
    if key.startswith("windows"):
        return "windows"
    if key.startswith(("mac", "osx")):
        return "macos"
    if not key or key.startswith(_MOBILE):
        return None
    return "linux"


def device_os(machine: Machine) -> Os | None:
    """What the machine runs: the scenario's `device_os` when it sets one, else what osPlatform names."""
    return machine.device_os or machine_os(machine.os_platform)


def version_numbers(text: str | None) -> tuple[int, ...] | None:
    if not text or not re.fullmatch(r"\d+(?:\.\d+)+", text):
        return None
    return tuple(int(part) for part in text.split("."))
