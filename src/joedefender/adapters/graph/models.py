"""Typed views of Graph's security JSON (GD `resources/security-alert.md`, `security-alertevidence.md`,
`security-incident.md`): tolerant of extra fields and nulls, and of evidence types we do not read.

Attributes are snake_case; Graph's camelCase names are the aliases. Enumerations Graph may extend
(status, severity, detectionSource, ...) are plain strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from joedefender.adapters._microsoft.wire import Texts, none_as_empty
from joedefender.adapters._microsoft.wire import WireModel as _Model

EVIDENCE_PREFIX = "#microsoft.graph.security."


class FileDetails(_Model):
    """A file as evidence names it: `fileEvidence.fileDetails`, `processEvidence.imageFile`."""

    sha1: str | None = None
    sha256: str | None = None
    file_name: str | None = None
    file_path: str | None = Field(default=None, description="the directory only, as in the documented example")
    file_size: int | None = None


class Evidence(_Model):
    """One evidence item of any type; the fields of the types the connector reads."""

    odata_type: str = Field(default="", alias="@odata.type")
    detection_status: str | None = None
    mde_device_id: str | None = None
    file_details: FileDetails | None = None  # fileEvidence
    image_file: FileDetails | None = None  # processEvidence
    process_id: int | None = None
    process_command_line: str | None = None
    url: str | None = None  # urlEvidence
    urls: Texts = []  # analyzedMessageEvidence
    device_dns_name: str | None = None  # deviceEvidence
    os_platform: str | None = None

    @property
    def kind(self) -> str:
        """The evidence type without its namespace, e.g. `fileEvidence`."""
        return self.odata_type.removeprefix(EVIDENCE_PREFIX).lstrip("#")


class Comment(_Model):
    """An alertComment (of an alert or an incident)."""

    comment: str | None = None
    created_by_display_name: str | None = None
    created_date_time: datetime | None = None


Comments = Annotated[list[Comment], BeforeValidator(none_as_empty)]


class Alert(_Model):
    id: str
    provider_alert_id: str | None = None
    incident_id: str | None = None
    status: str | None = None
    severity: str | None = None
    classification: str | None = None
    determination: str | None = None
    service_source: str | None = None
    detection_source: str | None = None
    title: str | None = None
    category: str | None = None
    assigned_to: str | None = None
    threat_display_name: str | None = None
    threat_family_name: str | None = None
    created_date_time: datetime | None = None
    last_update_date_time: datetime | None = None
    comments: Comments = []
    evidence: Annotated[list[Evidence], BeforeValidator(none_as_empty)] = []


class Incident(_Model):
    id: str
    display_name: str | None = None
    status: str | None = None
    severity: str | None = None
    assigned_to: str | None = None
    custom_tags: Texts = []
    comments: Comments = []
    last_update_date_time: datetime | None = None


class AlertPage(BaseModel):
    """One answer of a list call: the items, the link to the next page (when Graph gives one) and
    the number of all matching items (when asked with `$count=true`)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    value: list[Alert]
    next_link: str | None = Field(default=None, alias="@odata.nextLink")
    count: int | None = Field(default=None, alias="@odata.count")
