"""Process evidence as samples: the image that ran, and the files a proxy binary's command line ran.

- **The image** is a sample by its `sha256`, like File evidence, unless it is an operating-system
  file (`os_binaries`): Windows' own rundll32.exe doing someone else's work is not the payload.
- **The command line** of a proxy-execution binary names the payload (`proxy_targets`): a file
  whose hash nobody knows yet, to be collected by its path from the process's machine.

Defender's alert evidence does not say the device's platform, so an image's path is read by the
form of its folder (`platforms.decide_platform`, the rule collection uses when `osPlatform` is
silent): `C:\\…` is Windows, `/…` Linux or macOS by its root.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from joedefender.domain.alerts import Alert, Evidence
from joedefender.domain.origins import Origin, OriginKind
from joedefender.domain.os_binaries import OsBinaryRule, OsBinaryRules
from joedefender.domain.platforms import Platform, decide_platform
from joedefender.domain.proxy_targets import ProcessRun, Target, Targets, alert_targets

PROCESS = "process"  # the entity type, lower case


@dataclass(frozen=True)
class ProcessPolicy:
    """What triage takes from Process evidence: the settings AnalyseProcessImages,
    FetchCommandLineTargets and ExtraOsBinaryRules (with the built-in table)."""

    images: bool = True
    targets: bool = True
    os_rules: OsBinaryRules = field(default_factory=OsBinaryRules.default)


def is_process(item: Evidence) -> bool:
    return (item.entity_type or "").lower() == PROCESS


def _platform(item: Evidence) -> Platform:
    return decide_platform(None, item.file_path).platform or Platform.WINDOWS


def image_path(item: Evidence) -> str | None:
    """The image's full path, joined for the platform its folder's form says; None without both."""
    return item.path_on(_platform(item))


def os_binary(item: Evidence, rules: OsBinaryRules) -> OsBinaryRule | None:
    """The rule that makes the item's image an operating-system file, or None (also when its path
    is not known: such an image is not known to be the system's)."""
    path = image_path(item)
    return None if path is None else rules.match(path, _platform(item))


def origin(item: Evidence) -> Origin | None:
    """How a comment names the sample this item gave: as a process image; None for File evidence."""
    if not is_process(item):
        return None
    return Origin(kind=OriginKind.PROCESS_IMAGE, path=image_path(item) or item.file_name or "")


def target_origin(target: Target) -> Origin:
    return Origin(kind=OriginKind.RUN_BY, path=target.path, runner=target.runner)


def runs(alert: Alert) -> list[ProcessRun]:
    """The alert's processes whose command line may name a file: those with an image and a line."""
    return [
        ProcessRun(
            image=item.path or item.file_name or "",
            command_line=item.process_command_line or "",
            machine_id=item.machine_id or alert.machine_id,
        )
        for item in alert.evidence
        if is_process(item) and item.file_name and item.process_command_line
    ]


def command_line_targets(alert: Alert, policy: ProcessPolicy) -> Targets:
    """The files the alert's proxy binaries were told to run (at most `MAX_TARGETS_PER_ALERT`)."""
    if not policy.targets:
        return Targets()
    return alert_targets(runs(alert), policy.os_rules)


def names(items: Iterable[str], limit: int = 3) -> str:
    """A few of `items`, and how many more, for a reason (the caller shows it escaped)."""
    listed = list(items)
    more = f" and {len(listed) - limit} more" if len(listed) > limit else ""
    return ", ".join(listed[:limit]) + more
