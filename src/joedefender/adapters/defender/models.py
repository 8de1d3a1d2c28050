"""Typed views of Defender's JSON: tolerant of extra fields, nulls and the documented misspellings.

Attributes are snake_case; Defender's camelCase names are the aliases. Enumerations Defender may
extend (status, severity, ...) are plain strings; the `StrEnum` classes below name the values we
act on, and compare equal to those strings.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from joedefender.adapters._microsoft.calls import format_time
from joedefender.adapters._microsoft.wire import Texts, none_as_empty
from joedefender.adapters._microsoft.wire import WireModel as _Model
from joedefender.domain.liveresponse import ActionStatus


def _comma_separated(value: object) -> object:
    """`rbacGroupNames` is documented as a comma-separated string but sent as an array."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class AlertStatus(StrEnum):
    UNKNOWN = "Unknown"
    NEW = "New"
    IN_PROGRESS = "InProgress"
    RESOLVED = "Resolved"


class Classification(StrEnum):
    TRUE_POSITIVE = "TruePositive"
    INFORMATIONAL_EXPECTED_ACTIVITY = "InformationalExpectedActivity"
    FALSE_POSITIVE = "FalsePositive"


class Determination(StrEnum):
    MULTI_STAGED_ATTACK = "MultiStagedAttack"
    MALICIOUS_USER_ACTIVITY = "MaliciousUserActivity"
    COMPROMISED_USER = "CompromisedUser"
    MALWARE = "Malware"
    PHISHING = "Phishing"
    UNWANTED_SOFTWARE = "UnwantedSoftware"
    SECURITY_TESTING = "SecurityTesting"
    LINE_OF_BUSINESS_APPLICATION = "LineOfBusinessApplication"
    CONFIRMED_USER_ACTIVITY = "ConfirmedUserActivity"
    CLEAN = "Clean"
    INSUFFICIENT_DATA = "InsufficientData"
    OTHER = "Other"


# A machine action's status: the core's own enum, which spells Defender's values.
MachineActionStatus = ActionStatus
FINAL_ACTION_STATUSES = frozenset(status for status in ActionStatus if not status.running)


class CommandType(StrEnum):
    PUT_FILE = "PutFile"
    RUN_SCRIPT = "RunScript"
    GET_FILE = "GetFile"


class IndicatorType(StrEnum):
    FILE_SHA1 = "FileSha1"
    FILE_SHA256 = "FileSha256"
    FILE_MD5 = "FileMd5"
    CERTIFICATE_THUMBPRINT = "CertificateThumbprint"
    IP_ADDRESS = "IpAddress"
    DOMAIN_NAME = "DomainName"
    URL = "Url"


class IndicatorAction(StrEnum):
    WARN = "Warn"
    BLOCK = "Block"
    AUDIT = "Audit"
    ALERT = "Alert"
    ALERT_AND_BLOCK = "AlertAndBlock"
    BLOCK_AND_REMEDIATE = "BlockAndRemediate"
    ALLOWED = "Allowed"


# --- alerts ---------------------------------------------------------------------------------------


class RelatedUser(_Model):
    user_name: str | None = None
    domain_name: str | None = None


class AlertComment(_Model):
    comment: str | None = None
    created_by: str | None = None
    created_time: datetime | None = Field(default=None, validation_alias=AliasChoices("createdTime", "createTime"))


class Evidence(_Model):
    entity_type: str | None = None
    evidence_creation_time: datetime | None = None
    sha1: str | None = None
    sha256: str | None = None
    file_name: str | None = None
    file_path: str | None = Field(default=None, description="the directory only, e.g. c:\\temp")
    process_id: int | None = None
    process_command_line: str | None = None
    process_creation_time: datetime | None = None
    parent_process_id: int | None = None
    parent_process_creation_time: datetime | None = None
    parent_process_file_name: str | None = None
    parent_process_file_path: str | None = None
    ip_address: str | None = None
    url: str | None = None
    registry_key: str | None = None
    registry_hive: str | None = None
    registry_value_type: str | None = None
    registry_value: str | None = None
    account_name: str | None = None
    domain_name: str | None = None
    user_sid: str | None = None
    aad_user_id: str | None = None
    user_principal_name: str | None = None
    detection_status: str | None = None


class Alert(_Model):
    id: str
    incident_id: int | None = None
    investigation_id: int | None = None
    assigned_to: str | None = Field(default=None, validation_alias=AliasChoices("assignedTo", "asssignedTo"))
    severity: str | None = None
    status: str | None = None
    classification: str | None = None
    determination: str | None = None
    investigation_state: str | None = None
    detection_source: str | None = None
    detector_id: str | None = None
    category: str | None = None
    threat_family_name: str | None = None
    threat_name: str | None = None
    title: str | None = None
    description: str | None = None
    alert_creation_time: datetime | None = None
    first_event_time: datetime | None = None
    last_event_time: datetime | None = None
    last_update_time: datetime | None = None
    resolved_time: datetime | None = None
    machine_id: str | None = None
    computer_dns_name: str | None = None
    rbac_group_name: str | None = None
    aad_tenant_id: str | None = None
    mitre_techniques: Texts = []
    related_user: RelatedUser | None = None
    comments: Annotated[list[AlertComment], BeforeValidator(none_as_empty)] = []
    evidence: Annotated[list[Evidence], BeforeValidator(none_as_empty)] = []


# --- machines and machine actions -----------------------------------------------------------------


class MachineIpAddress(_Model):
    ip_address: str | None = None
    mac_address: str | None = None
    operational_status: str | None = None


class Machine(_Model):
    id: str
    computer_dns_name: str | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    os_platform: str | None = None
    # Not in the Machine entity's documented properties (machine.md); read where Defender sends it.
    agent_version: str | None = None
    onboarding_status: str | None = None
    os_architecture: str | None = None
    version: str | None = None
    os_build: int | None = None
    last_ip_address: str | None = None
    last_external_ip_address: str | None = None
    health_status: str | None = None
    rbac_group_name: str | None = None
    rbac_group_id: int | None = None
    risk_score: str | None = None
    exposure_level: str | None = None
    aad_device_id: str | None = None
    device_value: str | None = None
    is_aad_joined: bool | None = None
    machine_tags: Texts = []
    ip_addresses: Annotated[list[MachineIpAddress], BeforeValidator(none_as_empty)] = []


class CommandParam(_Model):
    key: str
    value: str | None = None


class LiveResponseCommand(_Model):
    """One command of a live response request; build them with the class methods."""

    type: str
    params: Annotated[list[CommandParam], BeforeValidator(none_as_empty)] = []

    @classmethod
    def get_file(cls, path: str) -> LiveResponseCommand:
        return cls(type=CommandType.GET_FILE, params=[CommandParam(key="Path", value=path)])

    @classmethod
    def run_script(cls, name: str, args: str | None = None) -> LiveResponseCommand:
        params = [CommandParam(key="ScriptName", value=name)]
        if args is not None:
            params.append(CommandParam(key="Args", value=args))
        return cls(type=CommandType.RUN_SCRIPT, params=params)

    @classmethod
    def put_file(cls, name: str) -> LiveResponseCommand:
        return cls(type=CommandType.PUT_FILE, params=[CommandParam(key="FileName", value=name)])

    def param(self, key: str) -> str | None:
        """A parameter's value; keys compared without regard to case, as Defender does."""
        folded = key.lower()
        return next((p.value for p in self.params if p.key.lower() == folded), None)

    def to_api(self) -> dict[str, Any]:
        return {"type": self.type, "params": [{"key": p.key, "value": p.value} for p in self.params]}


class CommandStatus(_Model):
    """How one command of a live response action went (`command_status`: Created, Completed, Failed)."""

    index: int
    start_time: datetime | None = None
    end_time: datetime | None = None
    command_status: str | None = None
    errors: Texts = []
    command: LiveResponseCommand | None = None


class RelatedFileInfo(_Model):
    file_identifier: str | None = None
    file_identifier_type: str | None = None


class MachineAction(_Model):
    id: str
    type: str | None = None
    scope: str | None = None
    requestor: str | None = None
    external_id: str | None = Field(default=None, validation_alias=AliasChoices("externalID", "externalId"))
    request_source: str | None = None
    status: str | None = None
    machine_id: str | None = None
    computer_dns_name: str | None = None
    title: str | None = None
    requestor_comment: str | None = None
    cancellation_requestor: str | None = None
    cancellation_comment: str | None = None
    creation_date_time_utc: datetime | None = None
    cancellation_date_time_utc: datetime | None = None
    last_update_date_time_utc: datetime | None = Field(
        default=None,
        validation_alias=AliasChoices("lastUpdateDateTimeUtc", "lastUpdateTimeUtc", "last_update_date_time_utc"),
    )
    error_h_result: int | None = Field(default=None, validation_alias=AliasChoices("errorHResult"))
    related_file_info: RelatedFileInfo | None = None
    commands: Annotated[list[CommandStatus], BeforeValidator(none_as_empty)] = []

    @property
    def is_final(self) -> bool:
        """True once the action can no longer change (and can no longer be cancelled)."""
        return self.status in FINAL_ACTION_STATUSES


class ScriptResult(BaseModel):
    """The JSON a RunScript command leaves as its result (snake_case keys, unlike the API)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    script_name: str | None = None
    exit_code: int | None = None
    script_output: str = ""
    script_errors: str = ""

    @field_validator("script_output", "script_errors", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return "" if value is None else value


# --- library --------------------------------------------------------------------------------------


class LibraryFile(_Model):
    file_name: str
    sha256: str | None = None
    description: str | None = None
    creation_time: datetime | None = None
    last_updated_time: datetime | None = None
    created_by: str | None = None
    has_parameters: bool | None = None
    parameters_description: str | None = None


# --- indicators -----------------------------------------------------------------------------------


class Indicator(_Model):
    id: str
    indicator_value: str | None = None
    indicator_type: str | None = None
    application: str | None = None
    action: str | None = None
    external_id: str | None = Field(default=None, validation_alias=AliasChoices("externalID", "externalId"))
    source: str | None = None
    source_type: str | None = None
    created_by: str | None = None
    created_by_source: str | None = None
    created_by_display_name: str | None = None
    last_updated_by: str | None = None
    creation_time_date_time_utc: datetime | None = None
    expiration_time: datetime | None = None
    last_update_time: datetime | None = None
    severity: str | None = None
    title: str | None = None
    description: str | None = None
    recommended_actions: str | None = None
    generate_alert: bool | None = None
    rbac_group_names: Annotated[list[str], BeforeValidator(_comma_separated)] = []
    rbac_group_ids: Annotated[list[str], BeforeValidator(none_as_empty)] = []


class IndicatorSpec(_Model):
    """An indicator we submit; `to_api` gives the body Defender expects."""

    indicator_value: str = Field(min_length=1)
    indicator_type: str = Field(min_length=1)
    action: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    application: str | None = None
    expiration_time: datetime | None = None
    severity: str | None = None
    recommended_actions: str | None = None
    rbac_group_names: list[str] | None = None
    educate_url: str | None = None
    generate_alert: bool | None = None

    @model_validator(mode="after")
    def _audit_alerts(self) -> IndicatorSpec:
        if self.action == IndicatorAction.AUDIT and self.generate_alert is not True:
            raise ValueError("an Audit indicator needs generate_alert=True (Defender rejects it otherwise)")
        return self

    def to_api(self) -> dict[str, Any]:
        body = self.model_dump(by_alias=True, exclude_none=True)
        if self.expiration_time is not None:
            body["expirationTime"] = format_time(self.expiration_time)
        return body


class IndicatorImportResult(_Model):
    id: str | None = None
    indicator: str | None = None
    is_failed: bool = False
    failure_reason: str | None = None
