"""The fixed lists the emulated server offers: analysis systems, exit countries, locales.

Submissions may only name systems listed here or in the scenario's verdicts, as the real server
only accepts systems it has.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_BUILT_IN_SYSTEMS = (
    ("w10x64_21h1_office", "Windows 10 64 bit (version 21H1) with Office 2016"),
    ("w10x64_22h2", "Windows 10 64 bit (version 22H2)"),
    ("w11x64_22h2", "Windows 11 64 bit (version 22H2)"),
    ("w11x64_office", "Windows 11 64 bit with Office 2019"),
    ("w7x64_sp1_office", "Windows 7 64 bit SP1 with Office 2010"),
    ("lnxubuntu22", "Ubuntu Linux 22.04"),
    ("mac13", "macOS 13 Ventura"),
    ("android12", "Android 12"),
    ("ios16", "iOS 16"),
)

_ARCH_PREFIXES = (("lnx", "LINUX"), ("mac", "MAC"), ("android", "ANDROID"), ("ios", "IOS"))

LIA_COUNTRIES = ("Germany", "Switzerland", "United Kingdom", "United States")
LANGUAGES_AND_LOCALES = ("English, United States", "German, Germany", "French, France")


def systems(extra: Iterable[str] = (), listed: Iterable[tuple[str, str, str]] | None = None) -> list[dict[str, Any]]:
    """`server/systems` items: the built-in ones (or the scenario's own `listed`: name, arch,
    description), then any further system a scenario's verdicts name."""
    if listed is None:
        items = {name: (_arch(name), description) for name, description in _BUILT_IN_SYSTEMS}
    else:
        items = {name: (arch, description or name) for name, arch, description in listed}
    for name in extra:
        items.setdefault(name, (_arch(name), name))
    return [
        {"name": name, "description": description, "arch": arch, "count": 2}
        for name, (arch, description) in items.items()
    ]


def _arch(name: str) -> str:
    for prefix, arch in _ARCH_PREFIXES:
        if name.startswith(prefix):
            return arch
    return "WINDOWS"
