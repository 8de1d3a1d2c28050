"""The settings object: JoeAz compatibility, every validation path, and that secrets stay secret."""

import json
import subprocess
import sys
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import jbxapi
import pytest
from pydantic import SecretStr, ValidationError

from joedefender.bootstrap import checked_settings
from joedefender.settings import (
    DETECTION_SOURCES,
    SETTING_NAMES,
    SEVERITIES,
    STATUSES,
    ConfigurationError,
    Settings,
    SettingsError,
    read_settings_file,
)

CLIENT_SECRET = "cl1ent-S3cret~value"
API_KEY = "j0e-api-key-0123456789abcdef"
STORAGE_KEY = "st0rage-Acc0unt-Key=="
WEBHOOK_SECRET = "w3bhook-shared-secret"
SECRETS = (CLIENT_SECRET, API_KEY, STORAGE_KEY, WEBHOOK_SECRET)

REQUIRED = {
    "AzureTenantID": "8f2c1d4e-0a5b-4c6d-9e7f-1a2b3c4d5e6f",
    "AzureClientID": "1b2c3d4e-5f60-4718-9a0b-c1d2e3f40516",
    "AzureClientSecret": CLIENT_SECRET,
    "JoeSandboxAPIKey": API_KEY,
}

JOEAZ_NAMES = (
    "AzureClientID",
    "AzureClientSecret",
    "AzureTenantID",
    "AzureStorageConnectionString",
    "AzureStorageAccountKey",
    "JoeSandboxBaseURL",
    "JoeSandboxAPIKey",
    "JoeSandboxResubmit",
    "JoeSandboxAPIRetryTimeout",
    "JoeSandboxAPIMaxRetry",
    "JoeSandboxAnalysisJobTimeout",
    "DefenderApiRetryTimeout",
    "DefenderApiMaxRetry",
    "MachineAvailabilityTimeout",
    "MachineAvailabilityRetry",
    "DefenderAlertSeverity",
    "DefenderAlertStatus",
)

PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUTEST\n-----END CERTIFICATE-----\n"


def settings_with(**overrides: str) -> Settings:
    return Settings.from_mapping({**REQUIRED, **overrides})


def started_with(**overrides: str) -> Settings:
    """The settings as a connector starts with them: loaded, then what only the adapters know
    checked (Joe's analysis parameters), as every host does before it builds the connector."""
    return checked_settings(settings_with(**overrides))


def problems_for(**overrides: str) -> list[tuple[str, str]]:
    with pytest.raises(SettingsError) as caught:
        started_with(**overrides)
    return caught.value.problems


def only_problem(**overrides: str) -> str:
    """The one problem a single bad setting causes, after checking it names that setting."""
    problems = problems_for(**overrides)
    assert len(problems) == 1, problems
    setting, problem = problems[0]
    assert setting == next(iter(overrides))
    return problem


# --- defaults and JoeAz compatibility -----------------------------------------------------------


def test_defaults_with_only_the_required_settings() -> None:
    settings = Settings.from_mapping(REQUIRED)

    assert settings.azure_tenant_id == REQUIRED["AzureTenantID"]
    assert settings.azure_client_id == REQUIRED["AzureClientID"]
    assert settings.azure_client_secret.get_secret_value() == CLIENT_SECRET
    assert settings.joe_sandbox_api_key.get_secret_value() == API_KEY
    assert settings.azure_authority_host == "https://login.microsoftonline.com"
    assert settings.defender_api_base_url == "https://api.securitycenter.microsoft.com"
    assert settings.tls_ca_bundle is None
    assert settings.defender_api_retry_timeout == timedelta(minutes=5)
    assert settings.defender_api_max_retry == 5
    assert settings.machine_availability_timeout == timedelta(minutes=10)
    assert settings.machine_availability_retry == 5
    assert settings.joe_sandbox_base_url == "https://jbxcloud.joesecurity.org"
    assert settings.joe_sandbox_api_url == "https://jbxcloud.joesecurity.org/api"
    assert settings.joe_sandbox_accept_tac is True
    assert settings.joe_sandbox_resubmit is True
    assert settings.joe_sandbox_resubmit_after_days is None
    assert settings.joe_sandbox_api_retry_timeout == timedelta(minutes=5)
    assert settings.joe_sandbox_api_max_retry == 3
    assert settings.joe_sandbox_analysis_job_timeout == timedelta(minutes=30)
    assert settings.joe_sandbox_analysis_parameters == {}
    assert settings.joe_sandbox_systems == ()
    assert settings.defender_alert_severity == frozenset(SEVERITIES)
    assert settings.defender_alert_status == frozenset({"New", "InProgress"})
    assert settings.defender_alert_detection_source == frozenset({"WindowsDefenderAv", "WindowsDefenderAtp"})
    assert settings.defender_alert_title_filter == ()
    assert settings.fetch_quarantined_files is True
    assert settings.state_path == Path("joedefender.db")
    assert settings.webhook_secret is None
    assert settings.webhook_port == 8080
    assert settings.poll_interval == timedelta(seconds=60)
    assert settings.poll_lookback == timedelta(minutes=60)
    assert settings.workers == 4
    assert settings.azure_storage_connection_string is None
    assert settings.azure_storage_account_key is None
    assert settings.alert_source == "mde"
    assert settings.graph_api_base_url == "https://graph.microsoft.com"
    assert settings.graph_service_sources == frozenset({"microsoftDefenderForEndpoint"})
    assert settings.defender_incident_tags is False
    assert settings.defender_incident_comments is False
    assert settings.uses_graph is False
    assert (settings.analyse_process_images, settings.fetch_command_line_targets) == (True, True)
    assert settings.extra_os_binary_rules == ()


def test_a_joeaz_configuration_loads_with_the_same_meaning_and_units() -> None:
    joeaz = {
        **REQUIRED,
        "AzureStorageConnectionString": "DefaultEndpointsProtocol=https;AccountName=joe;AccountKey=" + STORAGE_KEY,
        "AzureStorageAccountKey": STORAGE_KEY,
        "JoeSandboxBaseURL": "https://jbxcloud.joesecurity.org",
        "JoeSandboxResubmit": "False",
        "JoeSandboxAPIRetryTimeout": "7",
        "JoeSandboxAPIMaxRetry": "5",
        "JoeSandboxAnalysisJobTimeout": "45",
        "DefenderApiRetryTimeout": "4",
        "DefenderApiMaxRetry": "3",
        "MachineAvailabilityTimeout": "5",
        "MachineAvailabilityRetry": "10",
        # the Logic App's parameters are JSON arrays, case-sensitive there
        "DefenderAlertSeverity": '["Medium","High"]',
        "DefenderAlertStatus": '["New"]',
    }

    settings = Settings.from_mapping(joeaz)

    assert settings.joe_sandbox_resubmit is False
    assert settings.joe_sandbox_api_retry_timeout == timedelta(minutes=7)
    assert settings.joe_sandbox_api_max_retry == 5
    assert settings.joe_sandbox_analysis_job_timeout == timedelta(minutes=45)
    assert settings.defender_api_retry_timeout == timedelta(minutes=4)
    assert settings.defender_api_max_retry == 3
    assert settings.machine_availability_timeout == timedelta(minutes=5)
    assert settings.machine_availability_retry == 10
    assert settings.defender_alert_severity == frozenset({"Medium", "High"})
    assert settings.defender_alert_status == frozenset({"New"})
    assert settings.azure_storage_account_key is not None
    assert settings.azure_storage_account_key.get_secret_value() == STORAGE_KEY
    assert settings.azure_storage_connection_string is not None
    assert STORAGE_KEY in settings.azure_storage_connection_string.get_secret_value()


def test_every_joeaz_name_is_accepted_and_listed() -> None:
    assert set(JOEAZ_NAMES) <= set(SETTING_NAMES)
    assert len(SETTING_NAMES) == len(set(SETTING_NAMES)) == len(Settings.model_fields)


def test_new_settings_are_read_in_their_units() -> None:
    settings = settings_with(
        AzureAuthorityHost="https://login.microsoftonline.us/",
        DefenderApiBaseURL="https://eu.api.security.microsoft.com/",
        JoeSandboxAcceptTAC="no",
        JoeSandboxResubmitAfterDays="14",
        JoeSandboxSystems="w10x64_office, w11x64",
        DefenderAlertDetectionSource="windowsdefenderav",
        DefenderAlertTitleFilter="Trojan,  ransom ,",
        FetchQuarantinedFiles="0",
        StatePath="/var/lib/joedefender/state.db",
        WebhookSecret=WEBHOOK_SECRET,
        WebhookPort="0",
        PollIntervalSeconds="90",
        PollLookbackMinutes="120",
        Workers="16",
    )

    assert settings.azure_authority_host == "https://login.microsoftonline.us"
    assert settings.defender_api_base_url == "https://eu.api.security.microsoft.com"
    assert settings.joe_sandbox_accept_tac is False
    assert settings.joe_sandbox_resubmit_after_days == 14
    assert settings.joe_sandbox_systems == ("w10x64_office", "w11x64")
    assert settings.defender_alert_detection_source == frozenset({"WindowsDefenderAv"})
    assert settings.defender_alert_title_filter == ("Trojan", "ransom")
    assert settings.fetch_quarantined_files is False
    assert settings.state_path == Path("/var/lib/joedefender/state.db")
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get_secret_value() == WEBHOOK_SECRET
    assert settings.webhook_port == 0
    assert settings.poll_interval == timedelta(seconds=90)
    assert settings.poll_lookback == timedelta(minutes=120)
    assert settings.workers == 16


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("Yes", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("NO", False),
        (" true ", True),
    ],
)
def test_booleans_accept_the_usual_spellings(text: str, expected: bool) -> None:
    assert settings_with(JoeSandboxResubmit=text).joe_sandbox_resubmit is expected


@pytest.mark.parametrize(
    ("setting", "text", "attribute", "expected"),
    [
        ("DefenderAlertSeverity", "high,MEDIUM", "defender_alert_severity", {"High", "Medium"}),
        ("DefenderAlertSeverity", "unspecified", "defender_alert_severity", {"UnSpecified"}),
        ("DefenderAlertSeverity", '["low", "Low"]', "defender_alert_severity", {"Low"}),
        (
            "DefenderAlertStatus",
            "inprogress, RESOLVED, unknown",
            "defender_alert_status",
            {"InProgress", "Resolved", "Unknown"},
        ),
        (
            "DefenderAlertDetectionSource",
            "customerti,mtp",
            "defender_alert_detection_source",
            {"CustomerTI", "MTP"},
        ),
        (
            "DefenderAlertDetectionSource",
            json.dumps([source.upper() for source in DETECTION_SOURCES]),
            "defender_alert_detection_source",
            DETECTION_SOURCES,
        ),
    ],
)
def test_enum_like_lists_match_any_case_and_use_the_documented_spelling(
    setting: str, text: str, attribute: str, expected: Iterable[str]
) -> None:
    settings = settings_with(**{setting: text})
    assert getattr(settings, attribute) == frozenset(expected)


def test_json_arrays_keep_commas_inside_items() -> None:
    settings = settings_with(DefenderAlertTitleFilter='["Trojan:Win32/Wacatac, variant", "EICAR"]')
    assert settings.defender_alert_title_filter == ("Trojan:Win32/Wacatac, variant", "EICAR")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://jbxcloud.joesecurity.org/api", "https://jbxcloud.joesecurity.org"),
        ("https://jbxcloud.joesecurity.org/api/", "https://jbxcloud.joesecurity.org"),
        ("https://jbxcloud.joesecurity.org/API", "https://jbxcloud.joesecurity.org"),
        ("https://joe.example.com/joesandbox/", "https://joe.example.com/joesandbox"),
        ("https://joe.example.com/joesandbox/api/", "https://joe.example.com/joesandbox"),
        ("joe.example.com", "https://joe.example.com"),
        ("http://127.0.0.1:8443/api", "http://127.0.0.1:8443"),
        # JoeAz's on-premise form: plain http inside the network stays allowed.
        ("http://joe.internal.example/joesandbox/index.php/api", "http://joe.internal.example/joesandbox/index.php"),
    ],
)
def test_joe_base_url_is_the_web_base_without_api(given: str, expected: str) -> None:
    settings = settings_with(JoeSandboxBaseURL=given)
    assert settings.joe_sandbox_base_url == expected
    assert settings.joe_sandbox_api_url == expected + "/api"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
        ("http://localhost:5001/", "http://localhost:5001"),
        ("http://[::1]:5001", "http://[::1]:5001"),
        ("api.security.microsoft.com", "https://api.security.microsoft.com"),
        ("HTTPS://api-gov.securitycenter.microsoft.us", "https://api-gov.securitycenter.microsoft.us"),
    ],
)
def test_defender_base_url_allows_http_only_to_this_machine(given: str, expected: str) -> None:
    assert settings_with(DefenderApiBaseURL=given).defender_api_base_url == expected


def test_analysis_parameters_are_checked_and_kept() -> None:
    parameters = {
        "internet-access": False,
        "hybrid-code-analysis": "yes",
        "priority": 5,
        "comments": "from joedefender",
        "tags": ["mde", "prod"],
    }

    settings = started_with(JoeSandboxAnalysisParameters=json.dumps(parameters))

    assert settings.joe_sandbox_analysis_parameters == {**parameters, "hybrid-code-analysis": True}
    assert settings.joe_sandbox_analysis_parameters["internet-access"] is False
    assert type(settings.joe_sandbox_analysis_parameters["priority"]) is int
    assert set(settings.joe_sandbox_analysis_parameters) <= set(jbxapi.submission_defaults)


def test_tls_ca_bundle_must_be_a_pem_file(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(PEM)

    assert settings_with(TlsCaBundle=str(bundle)).tls_ca_bundle == bundle


def test_values_are_trimmed_and_blank_means_unset() -> None:
    settings = Settings.from_mapping(
        {
            **{name: f"  {value}\n" for name, value in REQUIRED.items()},
            "JoeSandboxAPIMaxRetry": "   ",
            "WebhookSecret": "",
            "AzureStorageAccountKey": "",
        }
    )

    assert settings.azure_tenant_id == REQUIRED["AzureTenantID"]
    assert settings.azure_client_secret.get_secret_value() == CLIENT_SECRET
    assert settings.joe_sandbox_api_max_retry == 3
    assert settings.webhook_secret is None
    assert settings.azure_storage_account_key is None


def test_unknown_keys_are_ignored() -> None:
    settings = Settings.from_mapping({**REQUIRED, "PATH": "/usr/bin", "AzureWebJobsStorage": "x", "Foo": "@"})
    assert settings == Settings.from_mapping(REQUIRED)


def test_names_match_without_regard_to_case() -> None:
    """Windows upper-cases environment names; some hosts do the same."""
    settings = Settings.from_mapping(
        {**{name.upper(): value for name, value in REQUIRED.items()}, "joesandboxapimaxretry": "7"}
    )
    assert settings.azure_tenant_id == REQUIRED["AzureTenantID"]
    assert settings.joe_sandbox_api_max_retry == 7


def test_exact_name_wins_over_another_spelling() -> None:
    settings = settings_with(JoeSandboxAPIMaxRetry="2", JOESANDBOXAPIMAXRETRY="9")
    assert settings.joe_sandbox_api_max_retry == 2


def test_two_other_spellings_of_one_name_are_an_error() -> None:
    problems = problems_for(JOESANDBOXAPIMAXRETRY="2", joesandboxapimaxretry="9")
    assert len(problems) == 1
    setting, problem = problems[0]
    assert setting == "JoeSandboxAPIMaxRetry"
    assert "JOESANDBOXAPIMAXRETRY" in problem
    assert "joesandboxapimaxretry" in problem


def test_settings_are_immutable() -> None:
    settings = Settings.from_mapping(REQUIRED)
    with pytest.raises(ValidationError):
        settings.workers = 8  # type: ignore[misc]


def test_settings_can_be_built_in_code_by_field_name() -> None:
    settings = Settings(
        azure_tenant_id="tenant",
        azure_client_id="client",
        azure_client_secret=SecretStr(CLIENT_SECRET),
        joe_sandbox_api_key=SecretStr(API_KEY),
        defender_api_base_url="http://127.0.0.1:9000/",
        poll_interval=timedelta(seconds=5),
        workers=2,
    )

    assert settings.defender_api_base_url == "http://127.0.0.1:9000"
    assert settings.poll_interval == timedelta(seconds=5)
    assert settings.workers == 2
    with pytest.raises(ValidationError, match="is not between 1 and 64"):
        Settings(
            azure_tenant_id="tenant",
            azure_client_id="client",
            azure_client_secret=SecretStr(CLIENT_SECRET),
            joe_sandbox_api_key=SecretStr(API_KEY),
            workers=0,
        )


# --- every error path ---------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["AzureTenantID", "AzureClientID", "AzureClientSecret", "JoeSandboxAPIKey"])
def test_a_required_setting_that_is_missing_is_named(missing: str) -> None:
    values = {name: value for name, value in REQUIRED.items() if name != missing}

    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping(values)

    assert caught.value.problems == [(missing, "missing")]
    assert str(caught.value) == f"{missing}: missing"
    assert caught.value.setting == missing
    assert caught.value.problem == "missing"


def test_a_blank_required_setting_is_missing() -> None:
    assert problems_for(AzureTenantID="  ") == [("AzureTenantID", "missing")]


def test_the_error_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="AzureTenantID: missing"):
        Settings.from_mapping({})


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping(
            {
                "AzureClientID": REQUIRED["AzureClientID"],
                "JoeSandboxAPIKey": API_KEY,
                "JoeSandboxAPIMaxRetry": "three",
                "DefenderAlertSeverity": "Critical",
                "Workers": "0",
            }
        )

    error = caught.value
    assert error.problems == [
        ("AzureTenantID", "missing"),
        ("AzureClientSecret", "missing"),
        ("JoeSandboxAPIMaxRetry", "'three' is not a whole number"),
        ("DefenderAlertSeverity", "'Critical' is not one of UnSpecified, Informational, Low, Medium, High"),
        ("Workers", "0 is not between 1 and 64"),
    ]
    message = str(error)
    assert message.startswith("5 problems in the settings:")
    for setting, problem in error.problems:
        assert f"{setting}: {problem}" in message
    assert error.setting == "AzureTenantID, AzureClientSecret, JoeSandboxAPIMaxRetry, DefenderAlertSeverity, Workers"


@pytest.mark.parametrize(
    ("setting", "text", "expected"),
    [
        ("JoeSandboxAPIMaxRetry", "three", "'three' is not a whole number"),
        ("JoeSandboxAPIMaxRetry", "2.5", "'2.5' is not a whole number"),
        ("JoeSandboxAPIMaxRetry", "21", "21 is not between 0 and 20"),
        ("DefenderApiMaxRetry", "-1", "-1 is not between 0 and 20"),
        ("MachineAvailabilityRetry", "1000", "1000 is not between 0 and 100"),
        ("DefenderApiRetryTimeout", "-5", "-5 is not between 0 and 1440 minutes"),
        ("JoeSandboxAPIRetryTimeout", "5m", "'5m' is not a whole number"),
        ("MachineAvailabilityTimeout", "-1", "-1 is not between 0 and 1440 minutes"),
        ("JoeSandboxAnalysisJobTimeout", "0", "0 is not between 1 and 1440 minutes"),
        ("JoeSandboxAnalysisJobTimeout", "1441", "1441 is not between 1 and 1440 minutes"),
        ("JoeSandboxResubmitAfterDays", "-3", "-3 is not between 0 and 3650"),
        ("JoeSandboxResubmitAfterDays", "week", "'week' is not a whole number"),
        ("PollIntervalSeconds", "-60", "-60 is not between 0 and 86400 seconds"),
        ("PollLookbackMinutes", "0", "0 is not between 1 and 43200 minutes"),
        ("WebhookPort", "65536", "65536 is not between 0 and 65535"),
        ("WebhookPort", "http", "'http' is not a whole number"),
        ("Workers", "65", "65 is not between 1 and 64"),
    ],
)
def test_numbers_must_be_whole_and_in_range(setting: str, text: str, expected: str) -> None:
    assert only_problem(**{setting: text}) == expected


@pytest.mark.parametrize("setting", ["JoeSandboxResubmit", "JoeSandboxAcceptTAC", "FetchQuarantinedFiles"])
@pytest.mark.parametrize("text", ["maybe", "2", "on", "t"])
def test_booleans_reject_anything_else(setting: str, text: str) -> None:
    assert only_problem(**{setting: text}) == f"'{text}' is not true or false (use true/false, yes/no or 1/0)"


@pytest.mark.parametrize(
    ("setting", "text", "expected"),
    [
        ("DefenderAlertSeverity", "Critical", "'Critical' is not one of " + ", ".join(SEVERITIES)),
        (
            "DefenderAlertSeverity",
            "High,Severe,Urgent",
            "'Severe', 'Urgent' are not one of " + ", ".join(SEVERITIES),
        ),
        (
            "DefenderAlertSeverity",
            "[]",
            "names none of " + ", ".join(SEVERITIES) + "; leave it unset for the default",
        ),
        (
            "DefenderAlertSeverity",
            " , ,",
            "names none of " + ", ".join(SEVERITIES) + "; leave it unset for the default",
        ),
        ("DefenderAlertStatus", "Open", "'Open' is not one of " + ", ".join(STATUSES)),
        (
            "DefenderAlertDetectionSource",
            "Defender",
            "'Defender' is not one of " + ", ".join(DETECTION_SOURCES),
        ),
        ("DefenderAlertSeverity", '["High",', "'[\"High\",' is not a valid JSON array (Expecting value)"),
        ("DefenderAlertStatus", "[1]", "'1' in the list is not text"),
        ("DefenderAlertTitleFilter", '["ok", null]', "'null' in the list is not text"),
        ("JoeSandboxSystems", "w10x64, w7 x64", "'w7 x64': not system names"),
        ("JoeSandboxSystems", '["../etc"]', "'../etc': not system names"),
    ],
)
def test_lists_report_what_is_wrong(setting: str, text: str, expected: str) -> None:
    assert only_problem(**{setting: text}) == expected


def test_extra_os_binary_rules_are_checked_at_start_and_may_hold_commas() -> None:
    settings = settings_with(ExtraOsBinaryRules='["D:\\\\Windows\\\\*", "!C:\\\\Windows\\\\a,b.exe"]')
    assert settings.extra_os_binary_rules == ("D:\\Windows\\*", "!C:\\Windows\\a,b.exe")
    assert settings_with(ExtraOsBinaryRules="linux:/opt/vendor/bin/*, D:\\Windows\\*").extra_os_binary_rules == (
        "linux:/opt/vendor/bin/*",
        "D:\\Windows\\*",
    )
    for bad, why in (
        ("Windows\\*", "is not an absolute path"),
        ("C:\\Win*\\x", "'*' stands alone"),
        ("/usr/**/bin", "'**' may only end a rule"),
        ("linux:C:\\x", "prefix is for POSIX paths"),
    ):
        assert why in only_problem(ExtraOsBinaryRules=bad)


@pytest.mark.parametrize(
    ("setting", "text", "expected"),
    [
        ("AzureAuthorityHost", "http://login.microsoftonline.com", "must use https"),
        ("AzureAuthorityHost", "http://127.0.0.1:8400", "must use https"),
        ("AzureAuthorityHost", "https://login.microsoftonline.com/tenant", "must be a bare https://host"),
        (
            "DefenderApiBaseURL",
            "http://api.securitycenter.microsoft.com",
            "http only for localhost or 127.0.0.1",
        ),
        ("DefenderApiBaseURL", "ftp://127.0.0.1", "must use https"),
        (
            "DefenderApiBaseURL",
            "https://api.security.microsoft.com/?x=1",
            "must not have a query or fragment",
        ),
        ("DefenderApiBaseURL", "https://:443", "is not a URL with a host"),
        ("DefenderApiBaseURL", "https://api.security.microsoft.com:port", "is not a URL"),
        ("JoeSandboxBaseURL", "https://jbxcloud.joesecurity.org/#top", "must not have a query or fragment"),
    ],
)
def test_urls_are_checked(setting: str, text: str, expected: str) -> None:
    problem = only_problem(**{setting: text})
    assert expected in problem
    assert repr(text) in problem  # non-secret values are echoed


def test_tenant_and_client_ids_must_be_plain() -> None:
    problems = problems_for(AzureTenantID="contoso/../x", AzureClientID="my app")
    assert problems == [
        (
            "AzureTenantID",
            "'contoso/../x' is not a tenant ID (a GUID, or a domain like contoso.onmicrosoft.com)",
        ),
        ("AzureClientID", "'my app' is not an application (client) ID, which is a GUID"),
    ]


def test_tls_ca_bundle_errors(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.der"
    not_pem.write_bytes(b"\x30\x82\x01\x0a")
    absent = tmp_path / "absent.pem"

    assert only_problem(TlsCaBundle=str(absent)) == f"{str(absent)!r} does not exist or is not a file"
    assert only_problem(TlsCaBundle=str(tmp_path)) == f"{str(tmp_path)!r} does not exist or is not a file"
    assert only_problem(TlsCaBundle=str(not_pem)) == (
        f"{str(not_pem)!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    )


def test_state_path_must_not_be_a_directory(tmp_path: Path) -> None:
    assert only_problem(StatePath=str(tmp_path)) == (
        f"{str(tmp_path)!r} is a directory; give the path of the SQLite file"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{internet-access: false}", "is not valid JSON (Expecting property name enclosed in double quotes"),
        ('["internet-access"]', 'must be a JSON object, such as {"internet-access": false}'),
        ('{"internet-acces": false}', "'internet-acces' is not a Joe Sandbox submission parameter"),
        ('{"systems": ["w10x64"]}', "set 'systems' with JoeSandboxSystems, not here"),
        ('{"accept-tac": true}', "set 'accept-tac' with JoeSandboxAcceptTAC, not here"),
        ('{"internet-access": "sometimes"}', "'internet-access' must be true or false"),
        ('{"priority": 1.5}', "'priority' must be text, a whole number or a list of texts"),
        ('{"tags": ["a", 1]}', "'tags' must be text, a whole number or a list of texts"),
        ('{"comments": true}', "'comments' must be text, a whole number or a list of texts"),
        (
            '{"bogus": 1, "fast-mode": 3}',
            "'bogus' is not a Joe Sandbox submission parameter; 'fast-mode' must be true or false",
        ),
    ],
)
def test_analysis_parameters_errors(text: str, expected: str) -> None:
    assert only_problem(JoeSandboxAnalysisParameters=text).startswith(expected)


# --- Key Vault references -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "@Microsoft.KeyVault(SecretUri=https://joe-vault.vault.azure.net/secrets/JoeApiKey/)",
        "@microsoft.keyvault(VaultName=joe-vault;SecretName=JoeApiKey)",
        "  @MICROSOFT.KEYVAULT(VaultName=joe-vault;SecretName=JoeApiKey)",
    ],
)
@pytest.mark.parametrize("setting", ["JoeSandboxAPIKey", "AzureClientSecret", "AzureStorageAccountKey"])
def test_an_unresolved_key_vault_reference_in_a_secret_is_explained(setting: str, reference: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_with(**{setting: reference})

    assert [setting for setting, _ in caught.value.problems] == [setting]
    message = str(caught.value)
    assert "unresolved Key Vault reference" in message
    assert "managed identity Get on the vault's secrets" in message
    assert "joe-vault" not in message
    assert "JoeApiKey" not in message


@pytest.mark.parametrize(
    "setting",
    [
        "AzureTenantID",
        "JoeSandboxBaseURL",
        "Workers",
        "DefenderAlertSeverity",
        "TlsCaBundle",
        "JoeSandboxResubmit",
    ],
)
def test_an_unresolved_key_vault_reference_is_an_error_in_any_setting(setting: str) -> None:
    problem = only_problem(**{setting: "@Microsoft.KeyVault(VaultName=v1;SecretName=s1)"})
    assert problem.startswith("is an unresolved Key Vault reference")
    assert "SecretName" not in problem


def test_a_key_vault_reference_is_caught_when_built_in_code_too() -> None:
    with pytest.raises(ValidationError, match="unresolved Key Vault reference"):
        Settings(
            azure_tenant_id="tenant",
            azure_client_id="client",
            azure_client_secret=SecretStr("@Microsoft.KeyVault(VaultName=v;SecretName=s)"),
            joe_sandbox_api_key=SecretStr(API_KEY),
        )


# --- secrets stay secret ------------------------------------------------------------------------


def all_secrets() -> dict[str, str]:
    return {
        **REQUIRED,
        "AzureStorageConnectionString": "AccountKey=" + STORAGE_KEY,
        "AzureStorageAccountKey": STORAGE_KEY,
        "WebhookSecret": WEBHOOK_SECRET,
    }


def test_secrets_are_not_in_repr_or_str() -> None:
    settings = Settings.from_mapping(
        {
            **all_secrets(),
            "JoeSandboxAnalysisParameters": '{"archive-password": "infected-pw", "priority": 3}',
        }
    )

    for text in (repr(settings), str(settings)):
        for secret in (*SECRETS, "infected-pw"):
            assert secret not in text
        assert "'priority': 3" in text  # the rest of the parameters is still shown
    assert settings.joe_sandbox_analysis_parameters["archive-password"] == "infected-pw"


def test_a_bad_setting_next_to_secrets_does_not_leak_them() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping(
            {
                **all_secrets(),
                "JoeSandboxAPIMaxRetry": "three",
                "DefenderApiBaseURL": "http://remote.example.com",
                "JoeSandboxAnalysisParameters": '{"document-password": "d0c-pw", "fast-mode": "x"}',
            }
        )

    error = caught.value
    texts = [str(error), repr(error), error.setting, error.problem, str(error.__context__)]
    for text in texts:
        for secret in (*SECRETS, "d0c-pw"):
            assert secret not in text
    assert "'three' is not a whole number" in str(error)


def test_an_invalid_secret_is_not_echoed() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping({**REQUIRED, "AzureClientSecret": f"@Microsoft.KeyVault({CLIENT_SECRET})"})
    assert CLIENT_SECRET not in str(caught.value)


def test_credentials_in_a_url_are_not_echoed() -> None:
    problem = only_problem(JoeSandboxBaseURL=f"https://user:{API_KEY}@jbxcloud.joesecurity.org")
    assert problem == "must not carry a user name or password"


def test_broken_analysis_parameter_json_is_not_echoed() -> None:
    problem = only_problem(JoeSandboxAnalysisParameters='{"archive-password": "s3cr3t-zip"')
    assert "s3cr3t-zip" not in problem


# --- settings files -----------------------------------------------------------------------------


def test_dotenv_file(tmp_path: Path) -> None:
    path = tmp_path / "joedefender.env"
    path.write_text(
        "# joedefender settings\n"
        "\n"
        f"AzureTenantID={REQUIRED['AzureTenantID']}\n"
        f"export AzureClientID = {REQUIRED['AzureClientID']}   # the app registration\n"
        f"AzureClientSecret='{CLIENT_SECRET}'\n"
        f'JoeSandboxAPIKey="{API_KEY}"  # quoted\n'
        'DefenderAlertTitleFilter="a \\"quoted\\" title,line\\nbreak"\n'
        'DefenderAlertSeverity=\'["Medium", "High"]\'\n'
        "WebhookSecret='keeps \\n and # literally'\n"
        "JoeSandboxSystems=w10x64#not-a-comment\n"
        "Empty=\n"
        "  Indented.Name_1 = value\n"
    )

    values = read_settings_file(path)

    assert values == {
        "AzureTenantID": REQUIRED["AzureTenantID"],
        "AzureClientID": REQUIRED["AzureClientID"],
        "AzureClientSecret": CLIENT_SECRET,
        "JoeSandboxAPIKey": API_KEY,
        "DefenderAlertTitleFilter": 'a "quoted" title,line\nbreak',
        "DefenderAlertSeverity": '["Medium", "High"]',
        "WebhookSecret": "keeps \\n and # literally",
        "JoeSandboxSystems": "w10x64#not-a-comment",
        "Empty": "",
        "Indented.Name_1": "value",
    }


def test_dotenv_with_a_bom_and_windows_line_ends(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"\xef\xbb\xbfAzureTenantID=tenant\r\nWorkers=3\r\n")
    assert read_settings_file(path) == {"AzureTenantID": "tenant", "Workers": "3"}


def test_local_settings_json(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(
        json.dumps(
            {
                "IsEncrypted": False,
                "Values": {
                    "FUNCTIONS_WORKER_RUNTIME": "python",
                    **REQUIRED,
                    "JoeSandboxResubmit": False,
                    "JoeSandboxAPIMaxRetry": 4,
                    "DefenderAlertSeverity": ["High"],
                    "JoeSandboxAnalysisParameters": {"internet-access": False},
                    "WebhookSecret": None,
                },
                "Host": {"LocalHttpPort": 7071},
            }
        )
    )

    values = read_settings_file(path)
    settings = Settings.load(environ={}, file=path)

    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["JoeSandboxResubmit"] == "false"
    assert settings.azure_client_secret.get_secret_value() == CLIENT_SECRET
    assert settings.joe_sandbox_resubmit is False
    assert settings.joe_sandbox_api_max_retry == 4
    assert settings.defender_alert_severity == frozenset({"High"})
    assert settings.joe_sandbox_analysis_parameters == {"internet-access": False}
    assert settings.webhook_secret is None


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "settings.json",
            '{"AzureTenantID": "t"}',
            'not an Azure Functions local.settings.json (no "Values" object)',
        ),
        ("settings.json", "[1, 2]", 'not an Azure Functions local.settings.json (no "Values" object)'),
        ("settings.json", '{"Values": {"A": 1,}}', "is not valid JSON (Expecting property name"),
        ("odd.cfg", '{"Values": ', "is not valid JSON (Expecting value"),
        (".env", f"AzureTenantID=t\n{API_KEY}\n", "line 2 is not KEY=VALUE"),
        (".env", "[section]\nA=1\n", "line 1 is not KEY=VALUE"),
        (".env", f"AzureClientSecret='{CLIENT_SECRET}\n", "line 1: the quote is not closed on the same line"),
        (
            ".env",
            f'JoeSandboxAPIKey="{API_KEY}" trailing\n',
            "line 1: unexpected text after the closing quote",
        ),
    ],
)
def test_settings_file_errors(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content)

    with pytest.raises(SettingsError) as caught:
        read_settings_file(path)

    assert caught.value.setting == f"settings file {path}"
    assert expected in str(caught.value)
    assert API_KEY not in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)


def test_settings_file_reports_every_bad_line(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("bad line\nA=1\nalso bad\n")

    with pytest.raises(SettingsError) as caught:
        read_settings_file(path)

    assert [problem for _, problem in caught.value.problems] == [
        "line 1 is not KEY=VALUE",
        "line 3 is not KEY=VALUE",
    ]


def test_settings_file_that_cannot_be_read(tmp_path: Path) -> None:
    binary = tmp_path / "binary.env"
    binary.write_bytes(b"A=\xff\xfe\n")

    with pytest.raises(SettingsError, match="does not exist"):
        read_settings_file(tmp_path / "absent.env")
    with pytest.raises(SettingsError, match="is a directory"):
        read_settings_file(tmp_path)
    with pytest.raises(SettingsError, match="is not UTF-8 text"):
        read_settings_file(binary)


# --- load: file first, environment overrides ----------------------------------------------------


def write_env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{name}={json.dumps(value)}\n" for name, value in values.items()))
    return path


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    file = write_env_file(tmp_path / ".env", {**REQUIRED, "Workers": "2", "WebhookPort": "9000"})

    settings = Settings.load(environ={"Workers": "8", "WEBHOOKPORT": "9100", "PollIntervalSeconds": "5"}, file=file)

    assert settings.workers == 8
    assert settings.webhook_port == 9100
    assert settings.poll_interval == timedelta(seconds=5)
    assert settings.azure_client_secret.get_secret_value() == CLIENT_SECRET


def test_a_blank_environment_value_does_not_wipe_the_file_value(tmp_path: Path) -> None:
    file = write_env_file(tmp_path / ".env", {**REQUIRED, "Workers": "2"})
    assert Settings.load(environ={"Workers": "", "AzureTenantID": " "}, file=file).workers == 2


def test_load_without_a_file_reads_only_the_environment() -> None:
    assert Settings.load(environ={**REQUIRED, "Workers": "3"}).workers == 3


def test_load_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("JoeSandboxAPIMaxRetry", "6")

    assert Settings.load().joe_sandbox_api_max_retry == 6


def test_load_reports_problems_from_file_and_environment_together(tmp_path: Path) -> None:
    file = write_env_file(tmp_path / ".env", {**REQUIRED, "Workers": "many"})

    with pytest.raises(SettingsError) as caught:
        Settings.load(environ={"webhookport": "1", "WEBHOOKPORT": "2", "JoeSandboxResubmit": "perhaps"}, file=file)

    assert [setting for setting, _ in caught.value.problems] == [
        "WebhookPort",
        "JoeSandboxResubmit",
        "Workers",
    ]


def test_an_error_in_the_file_format_stops_load(tmp_path: Path) -> None:
    file = tmp_path / "settings.json"
    file.write_text('{"values": {}}')
    with pytest.raises(SettingsError, match='no "Values" object'):
        Settings.load(environ=REQUIRED, file=file)


def test_loading_the_settings_loads_no_client_library(tmp_path: Path) -> None:
    """The settings are read by every host before anything else; Joe's client (jbxapi, requests)
    is loaded only where the Joe adapter is built, so its parameter check lives there."""
    values = {**REQUIRED, "JoeSandboxAnalysisParameters": '{"priority": 3, "internet-access": "no"}'}
    script = (
        "import sys\n"
        "from joedefender.settings import Settings\n"
        f"Settings.from_mapping({values!r})\n"
        "print(sorted(m for m in ('jbxapi', 'requests', 'httpx', 'azure') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert done.stdout.strip() == "[]"


def test_the_alert_source_and_incident_verdicts_decide_whether_graph_is_used() -> None:
    assert settings_with(AlertSource="Graph").alert_source == "graph"
    assert settings_with(AlertSource="graph").uses_graph
    assert settings_with(DefenderIncidentTags="true").uses_graph
    assert settings_with(DefenderIncidentComments="1").incident_verdicts
    assert "mde, graph" in only_problem(AlertSource="sentinel")
    sources = settings_with(GraphServiceSources="microsoftdefenderforoffice365,microsoftDefenderForEndpoint")
    assert sources.graph_service_sources == {"microsoftDefenderForOffice365", "microsoftDefenderForEndpoint"}
    assert "not one of" in only_problem(GraphServiceSources="defenderForToasters")
