"""The connector's settings: one immutable object, validated once at start.

JoeAz's setting names keep their meaning and units, so a JoeAz configuration loads unchanged;
new settings use the same PascalCase style. Every problem names the setting, and all problems
are reported together so a user fixes a configuration in one pass, not one error at a time.
"""

import contextlib
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from joedefender.adapters.joe.parameters import is_boolean_parameter, parameter_problems
from joedefender.domain.errors import JoeDefenderError
from joedefender.domain.indicators import ACTIONS as INDICATOR_ACTIONS
from joedefender.domain.indicators import FILE_ONLY_ACTIONS
from joedefender.domain.indicators import SEVERITIES as INDICATOR_SEVERITIES
from joedefender.domain.shared_secret import MIN_LENGTH as MIN_WEBHOOK_SECRET
from joedefender.domain.shared_secret import shared_secret_weakness

__all__ = [
    "DETECTION_SOURCES",
    "MIN_WEBHOOK_SECRET",
    "SETTING_NAMES",
    "SEVERITIES",
    "STATUSES",
    "ConfigurationError",
    "Settings",
    "SettingsError",
    "is_loopback",
    "read_settings_file",
]

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

_MINUTES_PER_DAY = 24 * 60
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_KEY_VAULT_PREFIX = "@microsoft.keyvault("
_KEY_VAULT_PROBLEM = (
    "is an unresolved Key Vault reference: the platform could not read the secret and left the "
    "reference text in its place. Grant the app's managed identity Get on the vault's secrets "
    "(role Key Vault Secrets User), and check that the reference names an existing vault and secret "
    "and that the vault is reachable from the app"
)
_MASK = "**********"
_ECHO_LIMIT = 80
# Parameters the connector sets from its own settings, so they have one place only.
_PARAMETER_OWNERS = {"systems": "JoeSandboxSystems", "accept-tac": "JoeSandboxAcceptTAC"}


class ConfigurationError(JoeDefenderError):
    """A setting is missing or wrong; the message names the setting and what is wrong with it."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class SettingsError(ConfigurationError):
    """One or more settings are wrong; `problems` lists each (setting, problem) pair."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        if not problems:
            raise ValueError("SettingsError needs at least one problem")
        self.problems = list(problems)
        super().__init__(*self.problems[0])
        if len(self.problems) > 1:
            self.setting = ", ".join(dict.fromkeys(setting for setting, _ in self.problems))
            self.problem = "; ".join(f"{setting}: {problem}" for setting, problem in self.problems)
            lines = "\n".join(f"  {setting}: {problem}" for setting, problem in self.problems)
            self.args = (f"{len(self.problems)} problems in the settings:\n{lines}",)


# --- value parsers: each takes the raw value (text from the environment, or a typed value when
# --- the object is built in code) and returns the typed value or raises ValueError(problem).


def _echo(text: str) -> str:
    """Quote a non-secret value for an error message, cut short so a pasted blob stays readable."""
    return repr(text if len(text) <= _ECHO_LIMIT else text[:_ECHO_LIMIT] + "...")


def _whole_number(value: object, low: int, high: int, unit: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("is not a whole number")
    if isinstance(value, str):
        if not re.fullmatch(r"[+-]?[0-9]+", value):
            raise ValueError(f"{_echo(value)} is not a whole number")
        value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{value} is not between {low} and {high}{unit}")
    return value


def _whole(low: int, high: int) -> BeforeValidator:
    return BeforeValidator(lambda value: _whole_number(value, low, high))


def _optional_whole(low: int, high: int) -> BeforeValidator:
    return BeforeValidator(lambda value: None if value is None else _whole_number(value, low, high))


def _duration(unit: timedelta, unit_name: str, low: int, high: int) -> BeforeValidator:
    """Whole numbers of `unit` (JoeAz's settings are whole minutes); a timedelta passes if in range."""

    def parse(value: object) -> timedelta:
        if isinstance(value, timedelta):
            if not low * unit <= value <= high * unit:
                raise ValueError(f"{value} is not between {low} and {high} {unit_name}")
            return value
        return _whole_number(value, low, high, f" {unit_name}") * unit

    return BeforeValidator(parse)


def _minutes(low: int, high: int) -> BeforeValidator:
    return _duration(timedelta(minutes=1), "minutes", low, high)


def _seconds(low: int, high: int) -> BeforeValidator:
    return _duration(timedelta(seconds=1), "seconds", low, high)


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        folded = value.strip().lower()
        if folded in ("true", "1", "yes"):
            return True
        if folded in ("false", "0", "no"):
            return False
        raise ValueError(f"{_echo(value)} is not true or false (use true/false, yes/no or 1/0)")
    raise ValueError("is not true or false")


def _items(value: object) -> list[str]:
    """A comma-separated text or a JSON array (the Logic App's form, e.g. ["Medium","High"])."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{_echo(text)} is not a valid JSON array ({exc.msg})") from None
    if not isinstance(value, list | tuple | set | frozenset):
        raise ValueError("is not a comma-separated list or a JSON array")
    items = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{_echo(json.dumps(item, default=str))} in the list is not text")
        if item.strip():
            items.append(item.strip())
    return items


def _choices(allowed: tuple[str, ...]) -> BeforeValidator:
    """Enum-like lists: matched without regard to case, normalised to the documented spelling."""
    canonical = {choice.lower(): choice for choice in allowed}

    def parse(value: object) -> frozenset[str]:
        items = _items(value)
        unknown = [item for item in items if item.lower() not in canonical]
        if unknown:
            names = ", ".join(_echo(item) for item in unknown)
            verb = "is" if len(unknown) == 1 else "are"
            raise ValueError(f"{names} {verb} not one of {', '.join(allowed)}")
        if not items:
            raise ValueError(f"names none of {', '.join(allowed)}; leave it unset for the default")
        return frozenset(canonical[item.lower()] for item in items)

    return BeforeValidator(parse)


def _texts(pattern: str | None = None, what: str = "") -> BeforeValidator:
    def parse(value: object) -> tuple[str, ...]:
        items = _items(value)
        if pattern is not None:
            bad = [item for item in items if not re.fullmatch(pattern, item)]
            if bad:
                raise ValueError(f"{', '.join(_echo(item) for item in bad)}: not {what}")
        return tuple(items)

    return BeforeValidator(parse)


def _indicator_action(*, file: bool) -> BeforeValidator:
    """One indicator action; `Allowed` is refused (it would allow-list malware across the fleet)."""
    allowed = tuple(a for a in INDICATOR_ACTIONS if file or a not in FILE_ONLY_ACTIONS)
    canonical = {choice.lower(): choice for choice in allowed}

    def parse(value: object) -> str:
        text = _text(value)
        if text.lower() == "allowed":
            raise ValueError("'Allowed' is refused: it would allow the sample's IOCs on every device")
        if text.lower() not in canonical:
            raise ValueError(f"{_echo(text)} is not one of {', '.join(allowed)}")
        return canonical[text.lower()]

    return BeforeValidator(parse)


def _indicator_severity(value: object) -> str:
    text = _text(value)
    canonical = {choice.lower(): choice for choice in INDICATOR_SEVERITIES}
    if text.lower() not in canonical:
        raise ValueError(f"{_echo(text)} is not one of {', '.join(INDICATOR_SEVERITIES)}")
    return canonical[text.lower()]


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("is not text")
    return value.strip()


def _required_text(value: object) -> object:
    """Secrets and ids may arrive as SecretStr in code; only text is checked for emptiness."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("is empty")
    return value


def _tenant_id(value: object) -> str:
    text = _text(value)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,253}", text):
        raise ValueError(f"{_echo(text)} is not a tenant ID (a GUID, or a domain like contoso.onmicrosoft.com)")
    return text


def _client_id(value: object) -> str:
    text = _text(value)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,253}", text):
        raise ValueError(f"{_echo(text)} is not an application (client) ID, which is a GUID")
    return text


def _url(
    value: object, *, https_only: bool, bare_host: bool = False, strip_api: bool = False, http_anywhere: bool = False
) -> str:
    """Normalise a base URL: https (http only to this machine, unless `http_anywhere`), no trailing
    slash, no query."""
    text = _text(value)
    if "://" not in text:
        text = f"https://{text}"  # a bare host, as azure-identity's authority constants are
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise ValueError(f"{_echo(text)} is not a URL") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password")  # nor echo them
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not host or not _valid_host(host):
        raise ValueError(f"{_echo(text)} is not a URL with a host (a valid host name or IP address)")
    if parts.port == 0:
        raise ValueError(f"{_echo(text)} has port 0; give a port between 1 and 65535, or none")
    if scheme != "https" and not (scheme == "http" and not https_only and (http_anywhere or host in _LOCAL_HOSTS)):
        allowed = "https" if https_only else "https (http only for localhost or 127.0.0.1)"
        raise ValueError(f"{_echo(text)} must use {allowed}")
    if parts.query or parts.fragment:
        raise ValueError(f"{_echo(text)} must not have a query or fragment")
    path = parts.path.rstrip("/")
    if strip_api and path.lower().endswith("/api"):
        path = path[: -len("/api")].rstrip("/")
    if bare_host and path:
        raise ValueError(f"{_echo(text)} must be a bare https://host, without a path")
    return f"{scheme}://{parts.netloc}{path}"


def _valid_host(host: str) -> bool:
    """A DNS name (letters, digits, hyphens in dot-separated labels) or an IP address."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    name = host.removesuffix(".")
    return 0 < len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in name.split("."))


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) stays on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_STORAGE_PREFIX = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,41}[a-z0-9]$")


def _storage_prefix(value: object) -> str:
    """Names the Azure store's table and queues, so it obeys the queue naming rules."""
    text = _text(value)
    if not _STORAGE_PREFIX.match(text):
        raise ValueError(
            f"{_echo(text)} is no storage prefix: 3 to 43 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit"
        )
    return text


def _bind_address(value: object) -> str:
    text = _text(value)
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        if text.lower() == "localhost":
            return "127.0.0.1"
        raise ValueError(f"{_echo(text)} is not an IP address (e.g. 127.0.0.1, 0.0.0.0 or ::)") from None


def _pem_path(value: object, marker: bytes, what: str) -> Path | None:
    """A readable PEM file holding `marker`; the file's content is never echoed."""
    if value is None:
        return None
    if not isinstance(value, str | Path):
        raise ValueError("is not a file path")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"{_echo(str(path))} does not exist or is not a file")
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{_echo(str(path))} cannot be read ({exc.strerror})") from None
    if marker not in pem:
        raise ValueError(f"{_echo(str(path))} holds no PEM {what}")
    return path


def _pem_file(marker: bytes, what: str) -> BeforeValidator:
    return BeforeValidator(lambda value: _pem_path(value, marker, what))


def _authority_host(value: object) -> str:
    return _url(value, https_only=True, bare_host=True)


def _defender_url(value: object) -> str:
    return _url(value, https_only=False)


def _joe_url(value: object) -> str:
    """JoeAz's JoeSandboxBaseURL is the web base; a pasted API URL (…/api) is taken back to it.
    On-premise appliances are often served over plain http inside the network (JoeAz documents
    `http://<server>/joesandbox/index.php`), so http stays allowed here."""
    return _url(value, https_only=False, strip_api=True, http_anywhere=True)


def _ca_bundle(value: object) -> Path | None:
    return _pem_path(value, b"-----BEGIN CERTIFICATE-----", "certificate (-----BEGIN CERTIFICATE-----)")


def _state_path(value: object) -> Path:
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ValueError("is not a file path")
    path = Path(value).expanduser()
    if path.is_dir():
        raise ValueError(f"{_echo(str(path))} is a directory; give the path of the SQLite file")
    return path


def _is_secret_parameter(key: str) -> bool:
    return "password" in key


def _analysis_parameters(value: object) -> dict[str, str | int | bool | list[str]]:
    """jbxapi submission parameters; checked by key and type so a typo fails at start, not at submit."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:  # no echo: the object may hold archive passwords
            raise ValueError(f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(value, Mapping):
        raise ValueError('must be a JSON object, such as {"internet-access": false}')
    parameters: dict[str, str | int | bool | list[str]] = {}
    problems = []
    for key, given in value.items():
        if key in _PARAMETER_OWNERS:
            problems.append(f"set {key!r} with {_PARAMETER_OWNERS[key]}, not here")
            continue
        item = given
        if is_boolean_parameter(key):
            with contextlib.suppress(ValueError):  # else left as given, and the adapter's check says why
                item = _boolean(given)
        found = parameter_problems({key: item})  # one key at a time: the problems stay in the given order
        if found:
            problems += found
        else:
            checked = cast(str | int | bool | list[str], item)  # parameter_problems found it of these kinds
            parameters[key] = list(checked) if isinstance(checked, list) else checked
    if problems:
        raise ValueError("; ".join(problems))
    return parameters


def _secret_parameters_masked(parameters: Mapping[str, object]) -> dict[str, object]:
    return {key: _MASK if _is_secret_parameter(key) else item for key, item in parameters.items()}


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
    azure_tenant_id: Annotated[str, BeforeValidator(_tenant_id)] = Field(validation_alias="AzureTenantID")
    azure_client_id: Annotated[str, BeforeValidator(_client_id)] = Field(validation_alias="AzureClientID")
    azure_client_secret: Annotated[SecretStr, BeforeValidator(_required_text)] = Field(
        validation_alias="AzureClientSecret"
    )
    azure_authority_host: Annotated[str, BeforeValidator(_authority_host)] = Field(
        default="https://login.microsoftonline.com", validation_alias="AzureAuthorityHost"
    )
    defender_api_base_url: Annotated[str, BeforeValidator(_defender_url)] = Field(
        default="https://api.securitycenter.microsoft.com", validation_alias="DefenderApiBaseURL"
    )
    tls_ca_bundle: Annotated[Path | None, BeforeValidator(_ca_bundle)] = Field(
        default=None, validation_alias="TlsCaBundle"
    )
    defender_api_retry_timeout: Annotated[timedelta, _minutes(0, _MINUTES_PER_DAY)] = Field(
        default=timedelta(minutes=5), validation_alias="DefenderApiRetryTimeout"
    )
    defender_api_max_retry: Annotated[int, _whole(0, 20)] = Field(default=5, validation_alias="DefenderApiMaxRetry")
    machine_availability_timeout: Annotated[timedelta, _minutes(0, _MINUTES_PER_DAY)] = Field(
        default=timedelta(minutes=10), validation_alias="MachineAvailabilityTimeout"
    )
    machine_availability_retry: Annotated[int, _whole(0, 100)] = Field(
        default=5, validation_alias="MachineAvailabilityRetry"
    )

    # Joe Sandbox
    joe_sandbox_base_url: Annotated[str, BeforeValidator(_joe_url)] = Field(
        default="https://jbxcloud.joesecurity.org", validation_alias="JoeSandboxBaseURL"
    )
    joe_sandbox_api_key: Annotated[SecretStr, BeforeValidator(_required_text)] = Field(
        validation_alias="JoeSandboxAPIKey"
    )
    joe_sandbox_accept_tac: Annotated[bool, BeforeValidator(_boolean)] = Field(
        default=True, validation_alias="JoeSandboxAcceptTAC"
    )
    joe_sandbox_resubmit: Annotated[bool, BeforeValidator(_boolean)] = Field(
        default=True, validation_alias="JoeSandboxResubmit"
    )
    joe_sandbox_resubmit_after_days: Annotated[int | None, _optional_whole(0, 3650)] = Field(
        default=None, validation_alias="JoeSandboxResubmitAfterDays"
    )
    joe_sandbox_api_retry_timeout: Annotated[timedelta, _minutes(0, _MINUTES_PER_DAY)] = Field(
        default=timedelta(minutes=5), validation_alias="JoeSandboxAPIRetryTimeout"
    )
    joe_sandbox_api_max_retry: Annotated[int, _whole(0, 20)] = Field(
        default=3, validation_alias="JoeSandboxAPIMaxRetry"
    )
    joe_sandbox_analysis_job_timeout: Annotated[timedelta, _minutes(1, _MINUTES_PER_DAY)] = Field(
        default=timedelta(minutes=30), validation_alias="JoeSandboxAnalysisJobTimeout"
    )
    joe_sandbox_analysis_parameters: Annotated[
        dict[str, str | int | bool | list[str]], BeforeValidator(_analysis_parameters)
    ] = Field(default_factory=dict, validation_alias="JoeSandboxAnalysisParameters")
    joe_sandbox_systems: Annotated[tuple[str, ...], _texts(r"[A-Za-z0-9][A-Za-z0-9_.-]*", "system names")] = Field(
        default=(), validation_alias="JoeSandboxSystems"
    )

    # Alert filters (the JoeAz Logic App's names)
    defender_alert_severity: Annotated[frozenset[str], _choices(SEVERITIES)] = Field(
        default=frozenset(SEVERITIES), validation_alias="DefenderAlertSeverity"
    )
    defender_alert_status: Annotated[frozenset[str], _choices(STATUSES)] = Field(
        default=frozenset({"New", "InProgress"}), validation_alias="DefenderAlertStatus"
    )
    defender_alert_detection_source: Annotated[frozenset[str], _choices(DETECTION_SOURCES)] = Field(
        default=frozenset({"WindowsDefenderAv", "WindowsDefenderAtp"}),
        validation_alias="DefenderAlertDetectionSource",
    )
    defender_alert_title_filter: Annotated[tuple[str, ...], _texts()] = Field(
        default=(), validation_alias="DefenderAlertTitleFilter"
    )
    fetch_quarantined_files: Annotated[bool, BeforeValidator(_boolean)] = Field(
        default=True, validation_alias="FetchQuarantinedFiles"
    )
    allow_quarantine_restore: Annotated[bool, BeforeValidator(_boolean)] = Field(
        default=False, validation_alias="AllowQuarantineRestore"
    )

    defender_alert_classification: Annotated[bool, BeforeValidator(_boolean)] = Field(
        default=False, validation_alias="DefenderAlertClassification"
    )

    # Verdict actions: indicators pushed to Defender (off by default; see the README for why each default)
    defender_indicators_enabled: Annotated[bool, BeforeValidator(_boolean)] = Field(
        default=False, validation_alias="DefenderIndicatorsEnabled"
    )
    defender_indicator_verdicts: Annotated[frozenset[str], _choices(("malicious", "suspicious"))] = Field(
        default=frozenset({"malicious"}), validation_alias="DefenderIndicatorVerdicts"
    )
    defender_indicator_action_malicious_file: Annotated[str, _indicator_action(file=True)] = Field(
        default="Audit", validation_alias="DefenderIndicatorActionForMaliciousFile"
    )
    defender_indicator_action_malicious_network: Annotated[str, _indicator_action(file=False)] = Field(
        default="Audit", validation_alias="DefenderIndicatorActionForMaliciousIPAddressURL"
    )
    defender_indicator_action_suspicious_file: Annotated[str, _indicator_action(file=True)] = Field(
        default="Audit", validation_alias="DefenderIndicatorActionForSuspiciousFile"
    )
    defender_indicator_action_suspicious_network: Annotated[str, _indicator_action(file=False)] = Field(
        default="Audit", validation_alias="DefenderIndicatorActionForSuspiciousIPAddressURL"
    )
    defender_indicator_severity_malicious: Annotated[str, BeforeValidator(_indicator_severity)] = Field(
        default="High", validation_alias="DefenderIndicatorSeverityMalicious"
    )
    defender_indicator_severity_suspicious: Annotated[str, BeforeValidator(_indicator_severity)] = Field(
        default="Medium", validation_alias="DefenderIndicatorSeveritySuspicious"
    )
    defender_indicator_expiration_days: Annotated[int, _whole(1, 365)] = Field(
        default=30, validation_alias="DefenderIndicatorExpirationDays"
    )
    defender_indicator_rbac_group_names: Annotated[tuple[str, ...], _texts()] = Field(
        default=(), validation_alias="DefenderIndicatorRbacGroupNames"
    )
    defender_indicator_allow_list: Annotated[tuple[str, ...], _texts(r"\S{1,2048}", "values without spaces")] = Field(
        default=(), validation_alias="DefenderIndicatorAllowList"
    )
    defender_indicator_max_per_sample: Annotated[int, _whole(1, 500)] = Field(
        default=50, validation_alias="DefenderIndicatorMaxPerSample"
    )
    defender_indicator_max_per_hour: Annotated[int, _whole(1, 100_000)] = Field(
        default=5000, validation_alias="DefenderIndicatorMaxPerHour"
    )
    defender_indicator_tenant_headroom: Annotated[int, _whole(0, 15_000)] = Field(
        default=1000, validation_alias="DefenderIndicatorTenantHeadroom"
    )

    # Standalone service
    state_path: Annotated[Path, BeforeValidator(_state_path)] = Field(
        default=Path("joedefender.db"), validation_alias="StatePath"
    )
    webhook_secret: Annotated[SecretStr | None, BeforeValidator(_required_text)] = Field(
        default=None, validation_alias="WebhookSecret"
    )
    webhook_port: Annotated[int, _whole(0, 65535)] = Field(default=8080, validation_alias="WebhookPort")
    webhook_bind_address: Annotated[str, BeforeValidator(_bind_address)] = Field(
        default="127.0.0.1", validation_alias="WebhookBindAddress"
    )
    webhook_tls_cert_file: Annotated[Path | None, _pem_file(b"-----BEGIN CERTIFICATE-----", "certificate")] = Field(
        default=None, validation_alias="WebhookTlsCertFile"
    )
    webhook_tls_key_file: Annotated[Path | None, _pem_file(b"PRIVATE KEY-----", "private key")] = Field(
        default=None, validation_alias="WebhookTlsKeyFile"
    )
    webhook_allow_plain_http: Annotated[bool, BeforeValidator(_boolean)] = Field(
        default=False, validation_alias="WebhookAllowPlainHttp"
    )
    poll_interval: Annotated[timedelta, _seconds(0, 24 * 60 * 60)] = Field(
        default=timedelta(seconds=60), validation_alias="PollIntervalSeconds"
    )
    poll_lookback: Annotated[timedelta, _minutes(1, 30 * _MINUTES_PER_DAY)] = Field(
        default=timedelta(minutes=60), validation_alias="PollLookbackMinutes"
    )
    workers: Annotated[int, _whole(1, 64)] = Field(default=4, validation_alias="Workers")

    # Azure Functions host
    poller_enabled: Annotated[bool, BeforeValidator(_boolean)] = Field(default=True, validation_alias="PollerEnabled")
    """The Functions app's built-in poller (a timer trigger, every minute): on, the app finds new
    alerts by itself and the Logic App is optional (both together are harmless: intake ignores a
    repeated alert); off, alerts arrive only through the HTTP trigger. The standalone service
    uses PollIntervalSeconds instead."""

    # The Azure store (the Functions app's; its connection is the host's AzureWebJobsStorage)
    storage_prefix: Annotated[str, BeforeValidator(_storage_prefix)] = Field(
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
        """Rules across settings: off loopback the secret crosses a network, so it needs TLS (or a
        proxy in front that terminates it, said explicitly) and a secret strong enough not to be guessed."""
        problems = []
        if (self.webhook_tls_cert_file is None) != (self.webhook_tls_key_file is None):
            missing = "WebhookTlsKeyFile" if self.webhook_tls_key_file is None else "WebhookTlsCertFile"
            problems.append((missing, "missing: WebhookTlsCertFile and WebhookTlsKeyFile go together"))
        if is_loopback(self.webhook_bind_address):
            return problems
        if not self.webhook_tls and not self.webhook_allow_plain_http:
            problems.append(
                (
                    "WebhookBindAddress",
                    f"{self.webhook_bind_address} is not loopback, and the webhook has no TLS: set "
                    "WebhookTlsCertFile and WebhookTlsKeyFile, or WebhookAllowPlainHttp=true when a "
                    "TLS-terminating proxy is in front",
                )
            )
        secret = self.webhook_secret.get_secret_value() if self.webhook_secret is not None else ""
        if weakness := "missing" if not secret else shared_secret_weakness(secret):
            problems.append(
                (
                    "WebhookSecret",
                    f"{weakness}: a webhook on {self.webhook_bind_address} needs a random shared secret of "
                    f"at least {MIN_WEBHOOK_SECRET} characters; `joedefender secret` prints a fresh one",
                )
            )
        return problems

    def warnings(self) -> list[str]:
        """Accepted but risky choices, for the host to log at start."""
        found = []
        joe_host = urlsplit(self.joe_sandbox_base_url)
        if joe_host.scheme == "http" and not is_loopback(joe_host.hostname or ""):
            found.append(
                f"JoeSandboxBaseURL uses plain http to {joe_host.hostname}: the API key and the samples "
                "cross the network unencrypted"
            )
        if not is_loopback(self.webhook_bind_address) and not self.webhook_tls and self.webhook_allow_plain_http:
            found.append(
                f"the webhook serves plain http on {self.webhook_bind_address} (WebhookAllowPlainHttp=true): "
                "only a TLS-terminating proxy in front may reach it"
            )
        return found

    @property
    def joe_sandbox_api_url(self) -> str:
        """JoeAz's JoeSandboxBaseURL is the web base; the API lives under /api."""
        return f"{self.joe_sandbox_base_url}/api"

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # Archive and document passwords may sit in the analysis parameters.
        for name, value in super().__repr_args__():
            if name == "joe_sandbox_analysis_parameters" and isinstance(value, Mapping):
                yield name, _secret_parameters_masked(value)
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
            path = _state_path(value)
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
            raise SettingsError(_merge(problems, _problems_of(exc))) from None
        problems += settings.webhook_problems()
        if problems:
            raise SettingsError(problems)
        return settings


def _external_names() -> dict[str, str]:
    names = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        assert isinstance(alias, str), field_name
        names[field_name] = alias
    return names


_EXTERNAL_NAMES = _external_names()
SETTING_NAMES: tuple[str, ...] = tuple(_EXTERNAL_NAMES.values())
_BY_FOLDED_NAME = {name.lower(): name for name in SETTING_NAMES}


def _gather(values: Mapping[str, str]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Pick our settings out of a mapping, by exact name or else by a unique case-folded match.

    Windows and some hosts fold the case of environment names, so an exact match cannot be required.
    """
    exact: dict[str, str] = {}
    variants: dict[str, dict[str, str]] = {}
    for key, value in values.items():
        name = _BY_FOLDED_NAME.get(key.lower())
        if name is None or not isinstance(value, str) or not value.strip():
            continue
        if key == name:
            exact[name] = value
        else:
            variants.setdefault(name, {})[key] = value
    problems = []
    for name, spellings in variants.items():
        if name in exact:
            continue
        if len(spellings) == 1:
            exact[name] = next(iter(spellings.values()))
        else:
            listed = ", ".join(sorted(spellings))
            problems.append((name, f"set more than once under different spellings ({listed}); keep one"))
    return exact, problems


def _problems_of(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        location = error["loc"]
        head = str(location[0]) if location else "Settings"
        setting = _EXTERNAL_NAMES.get(head, head)
        if error["type"] == "missing":
            problem = "missing"
        elif error["type"] == "value_error" and "error" in error.get("ctx", {}):
            problem = str(error["ctx"]["error"])
        else:
            problem = error["msg"]
        if len(location) > 1:
            problem = f"{'.'.join(str(part) for part in location[1:])}: {problem}"
        problems.append((setting, problem))
    return problems


def _merge(first: list[tuple[str, str]], second: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A setting with a spelling problem is also 'missing' to pydantic; keep only the clearer one."""
    named = {setting for setting, _ in first}
    return first + [(setting, problem) for setting, problem in second if setting not in named]


# --- settings files -------------------------------------------------------------------------------

_DOTENV_LINE = re.compile(r"\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(?P<value>.*?)\s*")
_DOUBLE_QUOTE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def read_settings_file(path: Path) -> dict[str, str]:
    """Read a dotenv file or an Azure Functions local.settings.json; values are never echoed."""
    where = f"settings file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SettingsError([(where, "does not exist")]) from None
    except IsADirectoryError:
        raise SettingsError([(where, "is a directory")]) from None
    except UnicodeDecodeError:
        raise SettingsError([(where, "is not UTF-8 text")]) from None
    except OSError as exc:
        raise SettingsError([(where, f"cannot be read ({exc.strerror})")]) from None
    if Path(path).suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return _read_local_settings_json(text, where)
    return _read_dotenv(text, where)


def _read_local_settings_json(text: str, where: str) -> dict[str, str]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise SettingsError([(where, problem)]) from None
    if not isinstance(document, dict) or not isinstance(document.get("Values"), dict):
        problem = 'is JSON but not an Azure Functions local.settings.json (no "Values" object)'
        raise SettingsError([(where, problem)])
    return {str(key): _json_setting(value) for key, value in document["Values"].items()}


def _json_setting(value: object) -> str:
    """Settings are text; JSON scalars and lists are turned back into the text a user would write."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _read_dotenv(text: str, where: str) -> dict[str, str]:
    values = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _DOTENV_LINE.fullmatch(line)
        if match is None:  # the line is not shown: it may be a secret pasted without a name
            problems.append((where, f"line {number} is not KEY=VALUE"))
            continue
        try:
            values[match["key"]] = _dotenv_value(match["value"])
        except ValueError as exc:
            problems.append((where, f"line {number}: {exc}"))
    if problems:
        raise SettingsError(problems)
    return values


def _dotenv_value(raw: str) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = _closing_quote(raw, quote)
        rest = raw[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise ValueError("unexpected text after the closing quote")
        inner = raw[1:end]
        return _unescape(inner) if quote == '"' else inner
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def _closing_quote(raw: str, quote: str) -> int:
    index = 1
    while index < len(raw):
        if raw[index] == "\\" and quote == '"':
            index += 2
            continue
        if raw[index] == quote:
            return index
        index += 1
    raise ValueError("the quote is not closed on the same line")


def _unescape(inner: str) -> str:
    return re.sub(r"\\(.)", _unescape_one, inner)


def _unescape_one(match: re.Match[str]) -> str:
    return _DOUBLE_QUOTE_ESCAPES.get(match[1], match[0])
