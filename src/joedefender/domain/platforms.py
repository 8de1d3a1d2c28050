"""The platform of a device, and how an evidence path is spelled on it.

Defender's `Machine.osPlatform` has no documented list of values (machine.md types it only as
"Operating system platform"). Windows machines say `Windows10`, `Windows11`, `WindowsServer2019`
and the like; Linux machines are seen with their distribution's name (`Ubuntu`, `Debian`,
`RedHatEnterpriseLinux`, `CentOS`, `SuseLinux`) or `Linux`; Macs with `macOS` or `MacOs`
(coverage.md section 1.1). So the value is matched case-insensitively, spaces and punctuation
ignored, against those spellings; a value matching none falls back to the evidence path's form
(`C:\\...` or `\\\\server\\...` is Windows, `/...` is POSIX). Every decision carries the rule that
made it, for the job's history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from joedefender.domain.text import shown


class Platform(StrEnum):
    WINDOWS = "windows"
    LINUX = "linux"
    MACOS = "macos"

    @property
    def posix(self) -> bool:
        return self is not Platform.WINDOWS

    @property
    def label(self) -> str:
        return {"windows": "Windows", "linux": "Linux", "macos": "macOS"}[self.value]


# osPlatform values with spaces and punctuation removed, lowercased: the prefixes of each platform.
_WINDOWS_PREFIXES = ("windows",)
_MACOS_PREFIXES = ("macos", "osx", "macintosh")
_LINUX_PREFIXES = (
    "linux",
    "ubuntu",
    "debian",
    "redhat",
    "rhel",
    "centos",
    "suse",
    "opensuse",
    "sles",
    "oraclelinux",
    "amazonlinux",
    "fedora",
    "almalinux",
    "rockylinux",
    "mariner",
    "azurelinux",
)
# Platforms Defender protects that live response does not reach (run-live-response.md lists
# Windows, macOS and Linux servers only).
_UNSUPPORTED_PREFIXES = ("ios", "ipados", "android", "chromeos")
# Where a POSIX path most likely lies on a Mac when osPlatform did not say: the macOS-only roots.
_MACOS_ROOTS = ("/Users/", "/Applications/", "/Library/", "/System/", "/private/", "/Volumes/")
_WINDOWS_PATH = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")
_SHOWN = 80


@dataclass(frozen=True, slots=True)
class PlatformDecision:
    """The platform a device was taken for (None: one live response does not support), the rule
    that decided (`osPlatform`, `windows path`, `posix path`, `default`), and why, for the history."""

    platform: Platform | None
    rule: str
    reason: str


def _key(value: str) -> str:
    return re.sub(r"[^a-z0-9]", "", value.lower())


def platform_from_os(os_platform: str | None) -> Platform | None:
    """The platform `osPlatform` names, or None when it names none we know."""
    key = _key(os_platform or "")
    for platform, prefixes in (
        (Platform.WINDOWS, _WINDOWS_PREFIXES),
        (Platform.MACOS, _MACOS_PREFIXES),
        (Platform.LINUX, _LINUX_PREFIXES),
    ):
        if key.startswith(prefixes):
            return platform
    return None


def decide_platform(os_platform: str | None, evidence_path: str | None) -> PlatformDecision:
    """The device's platform from its osPlatform, else from the form of the evidence's path."""
    named = f"osPlatform '{shown(os_platform, _SHOWN)}'" if os_platform else "osPlatform"
    platform = platform_from_os(os_platform)
    if platform is not None:
        return PlatformDecision(platform, "osPlatform", f"{named} is {platform.label}")
    if os_platform and _key(os_platform).startswith(_UNSUPPORTED_PREFIXES):
        return PlatformDecision(None, "osPlatform", f"{named}: live response does not support this platform")
    path = evidence_path or ""
    unknown = f"{named} names no platform we know" if os_platform else "Defender gave no osPlatform"
    shown_path = f"'{shown(path, _SHOWN)}'"
    if _WINDOWS_PATH.match(path):
        return PlatformDecision(
            Platform.WINDOWS, "windows path", f"{unknown}; the evidence path {shown_path} is a Windows path"
        )
    if path.startswith("/"):
        platform = Platform.MACOS if path.startswith(_MACOS_ROOTS) else Platform.LINUX
        return PlatformDecision(
            platform,
            "posix path",
            f"{unknown}; the evidence path {shown_path} is a POSIX path, taken for {platform.label}",
        )
    return PlatformDecision(Platform.WINDOWS, "default", f"{unknown} and no evidence path tells; taken for Windows")


def windows_path(directory: str | None, name: str | None) -> str | None:
    """`filePath` (the directory only, as Defender gives it) joined with `fileName`, the Windows way."""
    if not directory or not name:
        return None
    return directory.rstrip("\\/") + "\\" + name


def posix_path(directory: str | None, name: str | None) -> str | None:
    """`filePath` joined with `fileName` on Linux or macOS: `/` only, no Windows rules (a
    backslash is an ordinary character there). None unless the directory is absolute and the
    name a plain file name (no `/`, no NUL, not `.` or `..`)."""
    if not directory or not name or not directory.startswith("/"):
        return None
    if "/" in name or "\0" in name or "\0" in directory or name in (".", ".."):
        return None
    return directory.rstrip("/") + "/" + name


def evidence_path(platform: Platform, directory: str | None, name: str | None) -> str | None:
    """The full path of an evidence file on a device of `platform`."""
    return posix_path(directory, name) if platform.posix else windows_path(directory, name)


# The oldest agents live response runs on (live-response.md); Windows has no such agent number.
MIN_LIVE_RESPONSE_AGENT: dict[Platform, tuple[int, ...]] = {
    Platform.MACOS: (101, 43, 84),
    Platform.LINUX: (101, 45, 13),
}


def agent_version(value: str | None) -> tuple[int, ...] | None:
    """A dotted agent version (`101.23092.0012`) as numbers; None when it is not one."""
    if not value or not re.fullmatch(r"\d{1,9}(?:\.\d{1,9}){1,5}", value.strip()):
        return None
    return tuple(int(part) for part in value.strip().split("."))


def live_response_blocker(platform: Platform, version: str | None) -> str | None:
    """Why live response cannot run on this agent, or None (also when the version is unknown:
    the Machine entity documents no agent version, so its absence blocks nothing)."""
    minimum = MIN_LIVE_RESPONSE_AGENT.get(platform)
    parsed = agent_version(version)
    if minimum is None or parsed is None or parsed >= minimum:
        return None
    needed = ".".join(str(n) for n in minimum)
    running = shown(version or "", 40)
    return f"live response needs Defender {needed} or later on {platform.label}; this device runs {running}"
