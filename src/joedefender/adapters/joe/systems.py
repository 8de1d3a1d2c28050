"""Which Joe Sandbox systems analyse a sample, by the platform of the device it came from.

`JoeSandboxSystems` keeps its meaning (JoeAz's): the systems for Windows samples, and for URLs.
`JoeSandboxSystemsLinux` and `JoeSandboxSystemsMacOS` name them for samples collected from Linux
and macOS devices; where one is unset, the server's list (`server/systems`, read once) gives the
first system of that OS (`arch` LINUX or MAC), or, when it has none, the server's default (no
`systems` sent).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from joedefender.adapters.joe.client import JoeSandboxClient
from joedefender.domain.platforms import Platform

# server/systems' `arch` for each platform (joe-api.md: WINDOWS, MAC, LINUX, IOS, ANDROID).
ARCH: Mapping[Platform, str] = {Platform.WINDOWS: "WINDOWS", Platform.LINUX: "LINUX", Platform.MACOS: "MAC"}
SETTING: Mapping[Platform, str] = {
    Platform.WINDOWS: "JoeSandboxSystems",
    Platform.LINUX: "JoeSandboxSystemsLinux",
    Platform.MACOS: "JoeSandboxSystemsMacOS",
}


@dataclass(frozen=True)
class SystemChoice:
    """The systems for one platform (empty: the server's default) and where they come from."""

    systems: tuple[str, ...]
    source: str

    def describe(self) -> str:
        return f"{', '.join(self.systems) or 'the server default'} ({self.source})"


class SystemChooser:
    """Thread-safe; the server's list is read once, on first need, and kept."""

    def __init__(self, client: JoeSandboxClient, configured: Mapping[Platform, tuple[str, ...]]) -> None:
        self._client = client
        self._configured = dict(configured)
        self._lock = threading.Lock()
        self._server: list[dict[str, Any]] | None = None

    def _server_systems(self) -> list[dict[str, Any]]:
        with self._lock:
            if self._server is None:
                self._server = self._client.server_systems()
            return self._server

    def choose(self, platform: Platform) -> SystemChoice:
        """The systems for samples from `platform`; may read server/systems (JoeSandboxError)."""
        configured = self._configured.get(platform, ())
        if configured:
            return SystemChoice(configured, SETTING[platform])
        if platform is Platform.WINDOWS:
            return SystemChoice((), f"{SETTING[platform]} unset")
        names = [str(s["name"]) for s in self._server_systems() if str(s.get("arch", "")).upper() == ARCH[platform]]
        if names:
            return SystemChoice((names[0],), f"{SETTING[platform]} unset: the server's first {platform.label} system")
        return SystemChoice((), f"{SETTING[platform]} unset and the server lists no {platform.label} system")

    def submission_systems(self, platform: Platform | None) -> tuple[str, ...] | None:
        """What the client sends: None (its own systems, JoeSandboxSystems) for Windows and
        unknown platforms, else this platform's choice."""
        if platform is None or platform is Platform.WINDOWS:
            return None
        return self.choose(platform).systems
