"""The settings model: every setting the connector reads, its external (JoeAz-style) name, its
parser and its default. One immutable object, validated once at start; all problems are reported
together, so a user fixes a configuration in one pass.
"""

import os
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, field_validator

from joedefender.settings import loading, network, parsers, rules
from joedefender.settings.errors import SettingsError
from joedefender.settings.files import read_settings_file

SEVERITIES = ("UnSpecified", "Informational", "Low", "Medium", "High")
STATUSES = ("Unknown", "New", "InProgress", "Resolved")
DETECTION_SOURCES = (
    "ThirdPartySensors",
    "WindowsDefenderAv",
    "AutomatedInvestigation",
    "CustomDetection",
    "CustomerTI",
    "WindowsDefenderAtp",
    "MTP",
    "OfficeATP",
    "ThreatExperts",
    "WindowsDefenderSmartScreen",
)

ALERT_SOURCES = ("mde", "graph")
# GD resources/security-alert.md, serviceSource values (but `unknown` and `unknownFutureValue`)
GRAPH_SERVICE_SOURCES = (
    "microsoftDefenderForEndpoint",
    "microsoftDefenderForIdentity",
    "microsoftDefenderForCloudApps",
    "microsoftDefenderForOffice365",
    "microsoft365Defender",
    "azureAdIdentityProtection",
    "microsoftAppGovernance",
    "dataLossPrevention",
    "microsoftDefenderForCloud",
)

_MINUTES_PER_DAY = 24 * 60
_KEY_VAULT_PREFIX = "@microsoft.keyvault("
_KEY_VAULT_PROBLEM = (
    "is an unresolved Key Vault reference: the platform could not read the secret and left the "
    "reference text in its place. Grant the app's managed identity Get on the vault's secrets "
    "(role Key Vault Secrets User), and check that the reference names an existing vault and secret "
    "and that the vault is reachable from the app"
)


class Settings(BaseModel):
    """Everything the connector is told from outside; build it with `load` or `from_mapping`."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        hide_input_in_errors=True,
    )

    # Defender / Entra
    azure_tenant_id: Annotated[str, BeforeValidator(parsers.tenant_id)] = Field(validation_alias="AzureTenantID")
    azure_client_id: Annotated[str, BeforeValidator(parsers.client_id)] = Field(validation_alias="AzureClientID")
    azure_client_secret: Annotated[SecretStr, BeforeValidator(parsers.required_text)] = Field(
        validation_alias="AzureClientSecret"
    )
    azure_authority_host: Annotated[str, BeforeValidator(network.authority_host)] = Field(
        default="https://login.microsoftonline.com", validation_alias="AzureAuthorityHost"
    )
    defender_api_base_url: Annotated[str, BeforeValidator(network.defender_url)] = Field(
        default="https://api.securitycenter.microsoft.com", validation_alias="DefenderApiBaseURL"
    )
    # Defender XDR through Microsoft Graph (alerts_v2 as the alert source; verdicts on incidents)
    alert_source: Annotated[str, parsers.one_of(ALERT_SOURCES)] = Field(default="mde", validation_alias="AlertSource")
    graph_api_base_url: Annotated[str, BeforeValidator(network.graph_url)] = Field(
        default=network.GRAPH_GLOBAL, validation_alias="GraphApiBaseURL"
    )
    graph_service_sources: Annotated[frozenset[str], parsers.choices(GRAPH_SERVICE_SOURCES)] = Field(
        default=frozenset({"microsoftDefenderForEndpoint"}), validation_alias="GraphServiceSources"
    )
    defender_incident_tags: Annotated[bool, BeforeValidator(parsers.boolean)] = Field(
        default=False, validation_alias="DefenderIncidentTags"
    )
    defender_incident_comments: Annotated[bool, BeforeValidator(parsers.boolean)] = Field(
        default=False, validation_alias="DefenderIncidentComments"
    )
    tls_ca_bundle: Annotated[Path | None, BeforeValidator(network.ca_bundle)] = Field(
        default=None, validation_alias="TlsCaBundle"
    )
    defender_api_retry_timeout: Annotated[timedelta, parsers.minutes(0, _MINUTES_PER_DAY)] = Field(
        default=timedelta(minutes=5), validation_alias="DefenderApiRetryTimeout"
    )
    defender_api_max_retry: Annotated[int, parsers.whole(0, 20)] = Field(
        default=5, validation_alias="DefenderApiMaxRetry"
    )
    machine_availability_timeout: Annotated[timedelta, parsers.minutes(0, _MINUTES_PER_DAY)] = Field(
        default=timedelta(minutes=10), validation_alias="MachineAvailabilityTimeout"
    )
    machine_availability_retry: Annotated[int, parsers.whole(0, 100)] = Field(
        default=5, validation_alias="MachineAvailabilityRetry"
    )

    # Joe Sandbox
    joe_sandbox_base_url: Annotated[str, BeforeValidator(network.joe_url)] = Field(
        default="https://jbxcloud.joesecurity.org", validation_alias="JoeSandboxBaseURL"
    )
    joe_sandbox_api_key: Annotated[SecretStr, BeforeValidator(parsers.required_text)] = Field(
        validation_alias="JoeSandboxAPIKey"
    )
    joe_sandbox_accept_tac: Annotated[bool, BeforeValidator(parsers.boolean)] = Field(
        default=True, validation_alias="JoeSandboxAcceptTAC"
    )
    joe_sandbox_resubmit: Annotated[bool, BeforeValidator(parsers.boolean)] = Field(
        default=True, validation_alias="JoeSandboxResubmit"
    )
    joe_sandbox_resubmit_after_days: Annotated[int | None, parsers.optional_whole(0, 3650)] = Field(
        default=None, validation_alias="JoeSandboxResubmitAfterDays"
    )
    joe_sandbox_api_retry_timeout: Annotated[timedelta, parsers.minutes(0, _MINUTES_PER_DAY)] = Field(
        default=timedelta(minutes=5), validation_alias="JoeSandboxAPIRetryTimeout"
    )
    joe_sandbox_api_max_retry: Annotated[int, parsers.whole(0, 20)] = Field(
        default=3, validation_alias="JoeSandboxAPIMaxRetry"
    )
    joe_sandbox_analysis_job_timeout: Annotated[timedelta, parsers.minutes(1, _MINUTES_PER_DAY)] = Field(
        default=timedelta(minutes=30), validation_alias="JoeSandboxAnalysisJobTimeout"
    )
    joe_sandbox_analysis_parameters: Annotated[
        dict[str, parsers.JoeParameter], BeforeValidator(parsers.analysis_parameters)
    ] = Field(default_factory=dict, validation_alias="JoeSandboxAnalysisParameters")
    joe_sandbox_systems: Annotated[tuple[str, ...], parsers.texts(r"[A-Za-z0-9][A-Za-z0-9_.-]*", "system names")] = (
        Field(default=(), validation_alias="JoeSandboxSystems")
    )
    # Systems for samples collected from Linux and macOS devices; unset: a system of that OS from
    # the server's list (server/systems), else the server's default.
    joe_sandbox_systems_linux: Annotated[
        tuple[str, ...], parsers.texts(r"[A-Za-z0-9][A-Za-z0-9_.-]*", "system names")
    ] = Field(default=(), validation_alias="JoeSandboxSystemsLinux")
    joe_sandbox_systems_macos: Annotated[
        tuple[str, ...], parsers.texts(r"[A-Za-z0-9][A-Za-z0-9_.-]*", "system names")
    ] = Field(default=(), validation_alias="JoeSandboxSystemsMacOS")

    # Alert filters (the JoeAz Logic App's names)
    defender_alert_severity: Annotated[frozenset[str], parsers.choices(SEVERITIES)] = Field(
        default=frozenset(SEVERITIES), validation_alias="DefenderAlertSeverity"
    )
    defender_alert_status: Annotated[frozenset[str], parsers.choices(STATUSES)] = Field(
        default=frozenset({"New", "InProgress"}), validation_alias="DefenderAlertStatus"
    )
    defender_alert_detection_source: Annotated[frozenset[str], parsers.choices(DETECTION_SOURCES)] = Field(
        default=frozenset({"WindowsDefenderAv", "WindowsDefenderAtp"}),
        validation_alias="DefenderAlertDetectionSource",
    )
    defender_alert_title_filter: Annotated[tuple[str, ...], parsers.texts()] = Field(
        default=(), validation_alias="DefenderAlertTitleFilter"
    )
    fetch_quarantined_files: Annotated[bool, BeforeValidator(parsers.boolean)] = Field(
        default=True, validation_alias="FetchQuarantinedFiles"
    )
    allow_quarantine_restore: Annotated[bool, BeforeValidator(parsers.boolean)] = Field(
        default=False, validation_alias="AllowQuarantineRestore"
    )
    # Process evidence: the image that ran, and the file a system binary's command line ran
    analyse_process_images: Annotated[bool, BeforeValidator(parsers.boolean)] = Field(
        default=True, validation_alias="AnalyseProcessImages"
    )
    fetch_command_line_targets: Annotated[bool, BeforeValidator(parsers.boolean)] = Field(
        default=True, validation_alias="FetchCommandLineTargets"
    )
    extra_os_binary_rules: Annotated[tuple[str, ...], BeforeValidator(parsers.os_binary_rules)] = Field(
        default=(), validation_alias="ExtraOsBinaryRules"
    )

    defender_alert_classification: Annotated[bool, BeforeValidator(parsers.boolean)] = Field(
        default=False, validation_alias="DefenderAlertClassification"
    )

    # Verdict actions: indicators pushed to Defender (off by default; see the README for why each default)
    defender_indicators_enabled: Annotated[bool, BeforeValidator(parsers.boolean)] = Field(
        default=False, validation_alias="DefenderIndicatorsEnabled"
    )
    defender_indicator_verdicts: Annotated[frozenset[str], parsers.choices(("malicious", "suspicious"))] = Field(
        default=frozenset({"malicious"}), validation_alias="DefenderIndicatorVerdicts"
    )
    defender_indicator_action_malicious_file: Annotated[str, parsers.indicator_action(file=True)] = Field(
        default="Audit", validation_alias="DefenderIndicatorActionForMaliciousFile"
    )
    defender_indicator_action_malicious_network: Annotated[str, parsers.indicator_action(file=False)] = Field(
        default="Audit", validation_alias="DefenderIndicatorActionForMaliciousIPAddressURL"
    )
    defender_indicator_action_suspicious_file: Annotated[str, parsers.indicator_action(file=True)] = Field(
        default="Audit", validation_alias="DefenderIndicatorActionForSuspiciousFile"
    )
    defender_indicator_action_suspicious_network: Annotated[str, parsers.indicator_action(file=False)] = Field(
        default="Audit", validation_alias="DefenderIndicatorActionForSuspiciousIPAddressURL"
    )
    defender_indicator_severity_malicious: Annotated[str, BeforeValidator(parsers.indicator_severity)] = Field(
        default="High", validation_alias="DefenderIndicatorSeverityMalicious"
    )
    defender_indicator_severity_suspicious: Annotated[str, BeforeValidator(parsers.indicator_severity)] = Field(
        default="Medium", validation_alias="DefenderIndicatorSeveritySuspicious"
    )
    defender_indicator_expiration_days: Annotated[int, parsers.whole(1, 365)] = Field(
        default=30, validation_alias="DefenderIndicatorExpirationDays"
    )
    defender_indicator_rbac_group_names: Annotated[tuple[str, ...], parsers.texts()] = Field(
        default=(), validation_alias="DefenderIndicatorRbacGroupNames"
    )
    defender_indicator_allow_list: Annotated[tuple[str, ...], parsers.texts(r"\S{1,2048}", "values without spaces")] = (
        Field(default=(), validation_alias="DefenderIndicatorAllowList")
    )
    defender_indicator_shared_platforms: Annotated[
        tuple[str, ...],
        parsers.texts(r"(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\.?", "host names like files.example.com"),
    ] = Field(default=(), validation_alias="DefenderIndicatorSharedPlatforms")
    defender_indicator_max_per_sample: Annotated[int, parsers.whole(1, 500)] = Field(
        default=50, validation_alias="DefenderIndicatorMaxPerSample"
    )
    defender_indicator_max_per_hour: Annotated[int, parsers.whole(1, 100_000)] = Field(
        default=5000, validation_alias="DefenderIndicatorMaxPerHour"
    )
    defender_indicator_tenant_headroom: Annotated[int, parsers.whole(0, 15_000)] = Field(
        default=1000, validation_alias="DefenderIndicatorTenantHeadroom"
    )

    # Standalone service
    state_path: Annotated[Path, BeforeValidator(parsers.state_path)] = Field(
        default=Path("joedefender.db"), validation_alias="StatePath"
    )
    webhook_secret: Annotated[SecretStr | None, BeforeValidator(parsers.required_text)] = Field(
        default=None, validation_alias="WebhookSecret"
    )
    webhook_port: Annotated[int, parsers.whole(0, 65535)] = Field(default=8080, validation_alias="WebhookPort")
    webhook_bind_address: Annotated[str, BeforeValidator(network.bind_address)] = Field(
        default="127.0.0.1", validation_alias="WebhookBindAddress"
    )
    webhook_tls_cert_file: Annotated[Path | None, network.pem_file(b"-----BEGIN CERTIFICATE-----", "certificate")] = (
        Field(default=None, validation_alias="WebhookTlsCertFile")
    )
    webhook_tls_key_file: Annotated[Path | None, network.pem_file(b"PRIVATE KEY-----", "private key")] = Field(
        default=None, validation_alias="WebhookTlsKeyFile"
    )
    webhook_allow_plain_http: Annotated[bool, BeforeValidator(parsers.boolean)] = Field(
        default=False, validation_alias="WebhookAllowPlainHttp"
    )
    poll_interval: Annotated[timedelta, parsers.seconds(0, 24 * 60 * 60)] = Field(
        default=timedelta(seconds=60), validation_alias="PollIntervalSeconds"
    )
    poll_lookback: Annotated[timedelta, parsers.minutes(1, 30 * _MINUTES_PER_DAY)] = Field(
        default=timedelta(minutes=60), validation_alias="PollLookbackMinutes"
    )
    workers: Annotated[int, parsers.whole(1, 64)] = Field(default=4, validation_alias="Workers")

    # Azure Functions host
    poller_enabled: Annotated[bool, BeforeValidator(parsers.boolean)] = Field(
        default=True, validation_alias="PollerEnabled"
    )
    """The Functions app's built-in poller (a timer trigger, every minute): on, the app finds new
    alerts by itself and the Logic App is optional (both together are harmless: intake ignores a
    repeated alert); off, alerts arrive only through the HTTP trigger. The standalone service
    uses PollIntervalSeconds instead."""

    # The Azure store (the Functions app's; its connection is the host's AzureWebJobsStorage)
    storage_prefix: Annotated[str, BeforeValidator(parsers.storage_prefix)] = Field(
        default="joedefender", validation_alias="StoragePrefix"
    )

    # JoeAz's storage settings: accepted so JoeAz configurations load; samples never go to storage
    azure_storage_connection_string: SecretStr | None = Field(
        default=None, validation_alias="AzureStorageConnectionString"
    )
    azure_storage_account_key: SecretStr | None = Field(default=None, validation_alias="AzureStorageAccountKey")

    @field_validator("*", mode="before")
    @classmethod
    def _reject_key_vault_reference(cls, value: object) -> object:
        """An unresolved reference would otherwise be sent as a password and fail far from its cause."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str):
            if text.strip().lower().startswith(_KEY_VAULT_PREFIX):
                raise ValueError(_KEY_VAULT_PROBLEM)
            if isinstance(value, str):
                return value.strip()
        return value

    @property
    def webhook_tls(self) -> bool:
        return self.webhook_tls_cert_file is not None

    def webhook_problems(self) -> list[tuple[str, str]]:
        """Rules across the webhook's settings (`rules.webhook_problems`)."""
        return rules.webhook_problems(self)

    def warnings(self) -> list[str]:
        """Accepted but risky choices, for the host to log at start (`rules.warnings`)."""
        return rules.warnings(self)

    @property
    def graph_scope(self) -> str:
        """The Graph token's scope: the audience of GraphApiBaseURL's cloud."""
        return network.graph_audience(self.graph_api_base_url) + "/.default"

    @property
    def incident_verdicts(self) -> bool:
        """Whether the connector writes verdicts on incidents (a tag, comments, or both)."""
        return self.defender_incident_tags or self.defender_incident_comments

    @property
    def uses_graph(self) -> bool:
        """Whether the connector calls Microsoft Graph at all."""
        return self.alert_source == "graph" or self.incident_verdicts

    @property
    def joe_sandbox_api_url(self) -> str:
        """JoeAz's JoeSandboxBaseURL is the web base; the API lives under /api."""
        return f"{self.joe_sandbox_base_url}/api"

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # Archive and document passwords may sit in the analysis parameters.
        for name, value in super().__repr_args__():
            if name == "joe_sandbox_analysis_parameters" and isinstance(value, Mapping):
                yield name, parsers.secret_parameters_masked(value)
            else:
                yield name, value

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> "Settings":
        """Read the settings from app settings or environment variables; blank counts as unset."""
        gathered, problems = _gather(values)
        return cls._build(gathered, problems)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, file: Path | None = None) -> "Settings":
        """Read the file's values first, then let the environment override them (non-blank only)."""
        environment = os.environ if environ is None else environ
        from_file, file_problems = _gather(read_settings_file(file)) if file is not None else ({}, [])
        from_environment, environment_problems = _gather(environment)
        return cls._build(from_file | from_environment, file_problems + environment_problems)

    @classmethod
    def load_state_path(cls, environ: Mapping[str, str] | None = None, file: Path | None = None) -> Path:
        """Only StatePath, read as `load` reads it: for the commands that read the store alone
        (`status`), which must work when the network settings are missing or broken."""
        environment = os.environ if environ is None else environ
        from_file, problems = _gather(read_settings_file(file)) if file is not None else ({}, [])
        from_environment, environment_problems = _gather(environment)
        problems = [p for p in problems + environment_problems if p[0] == "StatePath"]
        value = (from_file | from_environment).get("StatePath", "joedefender.db")
        try:
            path = parsers.state_path(value)
        except ValueError as exc:
            problems.append(("StatePath", str(exc)))
        if problems:
            raise SettingsError(problems)
        return path

    @classmethod
    def _build(cls, values: Mapping[str, str], problems: list[tuple[str, str]]) -> "Settings":
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            # `from None`: the pydantic error would carry the raw input into tracebacks.
            raise SettingsError(loading.merge(problems, loading.problems_of(exc, _EXTERNAL_NAMES))) from None
        problems += settings.webhook_problems()
        if problems:
            raise SettingsError(problems)
        return settings


_EXTERNAL_NAMES = loading.external_names(Settings)
SETTING_NAMES: tuple[str, ...] = tuple(_EXTERNAL_NAMES.values())
_BY_FOLDED_NAME = {name.lower(): name for name in SETTING_NAMES}


def _gather(values: Mapping[str, str]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    return loading.gather(values, _BY_FOLDED_NAME)
