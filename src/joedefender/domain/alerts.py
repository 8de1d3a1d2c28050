"""An alert and its evidence as the core sees them: the fields the workflow reads, nothing else.

The alert source's adapter (the MDE API's or Graph's) builds these from its wire models, in the
MDE API's vocabulary (detection sources, statuses, entity types); every text in them came from
Defender and may have come from an attacker (file names, paths, URLs, threat names).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from joedefender.domain.platforms import Platform, evidence_path, windows_path


@dataclass(frozen=True, slots=True)
class Evidence:
    """One evidence entity of an alert. `file_path` is the directory only, as Defender gives it.

    A Process item carries its image file's hashes, name and directory, and the process's command
    line (`process_command_line`, as Defender gives it: `domain.proxy_targets` reads it).
    `machine_id` is the MDE machine the item was seen on when the source says so per item
    (Graph's `mdeDeviceId`); None: the alert's machine.
    """

    entity_type: str | None = None
    sha256: str | None = None
    sha1: str | None = None
    file_name: str | None = None
    file_path: str | None = None
    url: str | None = None
    detection_status: str | None = None
    machine_id: str | None = None
    process_command_line: str | None = None

    @property
    def path(self) -> str | None:
        """The file's full path on Windows, when Defender gave both the directory and the name."""
        return windows_path(self.file_path, self.file_name)

    def path_on(self, platform: Platform) -> str | None:
        """The file's full path on a device of `platform` (POSIX paths joined without Windows rules)."""
        return evidence_path(platform, self.file_path, self.file_name)


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    title: str | None = None
    severity: str | None = None
    status: str | None = None
    detection_source: str | None = None
    machine_id: str | None = None
    threat_name: str | None = None
    last_update_time: datetime | None = None
    evidence: tuple[Evidence, ...] = ()
    comments: tuple[str, ...] = ()
    classification: str | None = None  # set by an analyst (or by us); None while unclassified
    determination: str | None = None
    incident_id: str | None = None  # the Defender XDR incident the alert belongs to, if any
