"""The ARM templates as committed: current with their generator, parseable, secure by construction,
and in agreement with the code (every setting the code reads is set, every setting set is read,
with the same defaults) and with the README (its parameter table lists exactly their parameters).

Nothing here deploys: there is no ARM engine offline. What can be checked offline is checked on
the JSON the portal will read (checkov runs in `make check-deploy`)."""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from deploy import templates
from joedefender.adapters.azure.connection import AzureStorageConnection
from joedefender.hosts.alert_intake import parse_body
from joedefender.hosts.azure.functions import build_app
from joedefender.hosts.azure.ports import queue_names
from joedefender.hosts.azure.runtime import Hosted, Runtime
from joedefender.settings import SETTING_NAMES, Settings, SettingsError
from tests.azure.functions import bindings_of
from tests.azure.keys import DeployedKeys
from tests.deploy import arm
from tests.test_settings import REQUIRED

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_APPS = (templates.FLEX, templates.PREMIUM)
ALL = (*FUNCTION_APPS, templates.LOGIC_APP)

# Settings the code reads that the templates leave unset on purpose, each with its reason.
NOT_SET_ON_AZURE = {
    "StatePath": "the SQLite file of the standalone service; on Azure the state is in Tables",
    "WebhookSecret": "the standalone webhook's secret; on Azure the Functions host checks the function key",
    "WebhookPort": "the standalone webhook; on Azure the Functions host serves HTTP",
    "WebhookBindAddress": "the standalone webhook; on Azure the Functions host serves HTTP",
    "WebhookTlsCertFile": "the standalone webhook's TLS; on Azure the platform terminates TLS",
    "WebhookTlsKeyFile": "the standalone webhook's TLS; on Azure the platform terminates TLS",
    "WebhookAllowPlainHttp": "the standalone webhook; the function app is HTTPS only",
    "Workers": "standalone worker threads; on Azure the queue triggers' concurrency is host.json's",
    "PollIntervalSeconds": "the standalone poller's interval; the Functions poller is a timer (every minute)",
    "TlsCaBundle": "a PEM file on the machine; a function app has no place for it (Defender, Entra and Joe "
    "Cloud use public CAs)",
    "AzureStorageConnectionString": "JoeAz's; accepted and ignored by the code, so never set",
    "AzureStorageAccountKey": "JoeAz's; accepted and ignored by the code, so never set",
    "AzureWebJobsStorage": "a connection string holds the account key; the templates use the identity form "
    "(the connection string form is for Azurite and local runs)",
    "AzureWebJobsStorage__accountName": "public cloud only; the templates set the service URIs, right in every cloud",
    "WEBSITE_INSTANCE_ID": "set by the platform on each instance",
    "REQUESTS_CA_BUNDLE": "requests' own CA bundle override, honoured for the storage clients as requests would; "
    "Azure Storage uses a public CA",
    "CURL_CA_BUNDLE": "as REQUESTS_CA_BUNDLE",
}
# Settings the templates set that the Functions host or the platform reads, not the code.
READ_BY_THE_PLATFORM = {
    "AzureWebJobsStorage__blobServiceUri": "the Functions host's own blobs (timer locks, keys)",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where the host and worker send telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "telemetry authenticated with the managed identity",
    "FUNCTIONS_EXTENSION_VERSION": "Premium: the Functions runtime version (Flex takes it from functionAppConfig)",
    "FUNCTIONS_WORKER_RUNTIME": "Premium: the language worker (Flex takes it from functionAppConfig)",
    "WEBSITE_RUN_FROM_PACKAGE": "Premium: the package URL the app runs from",
}
# Deprecated on Flex Consumption (functions-app-settings.md, "Flex Consumption plan deprecations").
NOT_ON_FLEX = (
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "TZ",
)
KEY_VAULT_SECRETS = ("AzureTenantID", "AzureClientID", "AzureClientSecret", "JoeSandboxAPIKey")
ROLES = {
    templates.BLOB_DATA_OWNER,
    templates.QUEUE_DATA_CONTRIBUTOR,
    templates.TABLE_DATA_CONTRIBUTOR,
    templates.MONITORING_METRICS_PUBLISHER,
}


def load(name: str) -> dict[str, Any]:
    template: dict[str, Any] = json.loads((ROOT / "deploy" / name).read_text(encoding="utf-8"))
    return template


def resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    found = []
    for resource in template["resources"]:
        if resource["type"] == kind:
            found.append(resource)
        inner = resource.get("properties", {}).get("template")
        if inner:
            found += resources(inner, kind)
    return found


def site(template: dict[str, Any]) -> dict[str, Any]:
    (only,) = resources(template, "Microsoft.Web/sites")
    return only


def app_settings(template: dict[str, Any]) -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in site(template)["properties"]["siteConfig"]["appSettings"]}


@functools.cache
def environment_reads() -> frozenset[str]:
    """Names the code reads from the environment directly (os.environ / os.getenv literals)."""
    names = set()
    for path in (ROOT / "src" / "joedefender").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("get", "getenv")
            ):
                owner = ast.unparse(node.func.value)
                if owner in ("os.environ", "os", "environ") and node.args and isinstance(node.args[0], ast.Constant):
                    names.add(str(node.args[0].value))
            if isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ"):
                key = node.slice
                if isinstance(key, ast.Constant):
                    names.add(str(key.value))
    return frozenset(names)


class _Recording(dict[str, str]):
    """A settings mapping that notes every name read from it."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)


def storage_connection_reads() -> set[str]:
    """The names the store's connection reads (adapters/azure/connection.py), found by letting it
    read: with a connection string, with nothing, and with an account name (the identity form)."""
    names: set[str] = set()
    for values in (
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true"},
        {},
        {"AzureWebJobsStorage__accountName": "a"},
    ):
        recording = _Recording(values)
        with contextlib.suppress(ValueError):
            AzureStorageConnection.from_settings(recording)
        names |= recording.read
    return names


def code_reads() -> set[str]:
    return set(SETTING_NAMES) | environment_reads() | storage_connection_reads()


# --- the files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_committed_templates_are_what_the_generator_makes(name: str) -> None:
    assert (ROOT / "deploy" / name).read_text(encoding="utf-8") == templates.rendered(name), "run `make templates`"


@pytest.mark.parametrize("name", ALL)
def test_templates_parse_and_every_expression_names_a_declared_parameter(name: str) -> None:
    template = load(name)
    assert template["$schema"] == templates.SCHEMA
    text = json.dumps(template)
    declared = set(template["parameters"])
    inner = {
        p
        for resource in resources(template, "Microsoft.Resources/deployments")
        for p in resource["properties"]["template"]["parameters"]
    }
    used = set(re.findall(r"parameters\('([^']+)'\)", text))
    assert used <= declared | inner | {
        "$connections",
        "DefenderAlertSeverity",
        "DefenderAlertStatus",
        "FunctionUrl",
        "FunctionKey",
    }
    assert set(re.findall(r"variables\('([^']+)'\)", text)) <= set(template.get("variables", {}))
    unused = declared - used - set(templates.IGNORED_JOEAZ)
    assert not unused, f"declared but never used: {sorted(unused)}"
    for parameter in template["parameters"].values():
        assert parameter["metadata"]["description"]


# --- security properties -------------------------------------------------------------------------


@pytest.mark.parametrize("name", FUNCTION_APPS)
def test_function_app_is_https_only_tls12_without_ftp(name: str) -> None:
    template = load(name)
    properties = site(template)["properties"]
    assert properties["httpsOnly"] is True
    assert properties["siteConfig"]["minTlsVersion"] == "1.2"
    assert properties["siteConfig"]["scmMinTlsVersion"] == "1.2"
    assert properties["siteConfig"]["ftpsState"] == "Disabled"
    policies = resources(template, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert sorted(p["name"].rsplit("/", 1)[-1].strip("')]") for p in policies) == ["ftp", "scm"]
    assert all(p["properties"]["allow"] is False for p in policies)


@pytest.mark.parametrize("name", FUNCTION_APPS)
def test_storage_is_identity_only_with_its_queues_and_tables_and_no_sample_container(name: str) -> None:
    template = load(name)
    (account,) = resources(template, "Microsoft.Storage/storageAccounts")
    properties = account["properties"]
    assert properties["supportsHttpsTrafficOnly"] is True
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["allowBlobPublicAccess"] is False
    assert properties["allowSharedKeyAccess"] is False
    containers = resources(template, "Microsoft.Storage/storageAccounts/blobServices/containers")
    expected = [templates.DEPLOYMENT_CONTAINER] if name == templates.FLEX else []
    assert [c["name"].rsplit("/", 1)[-1].strip("')]") for c in containers] == expected
    assert all(c["properties"]["publicAccess"] == "None" for c in containers)
    # The queues the template creates are the ones the triggers bind to, for the default prefix.
    queues = template["variables"]["queues"]
    for queue in queue_names(template["parameters"]["StoragePrefix"]["defaultValue"]).values():
        assert f"'{queue.removeprefix('joedefender')}'" in queues
    assert resources(template, "Microsoft.Storage/storageAccounts/tableServices/tables")
    settings = app_settings(template)
    assert not any("AccountKey" in value or "listKeys" in value for value in settings.values())
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"


@pytest.mark.parametrize("name", FUNCTION_APPS)
def test_the_identity_has_exactly_the_roles_it_needs(name: str) -> None:
    template = load(name)
    assignments = resources(template, "Microsoft.Authorization/roleAssignments")
    roles = [re.search(r"'([0-9a-f-]{36})'\)\]$", a["properties"]["roleDefinitionId"]) for a in assignments]
    found = [match.group(1) for match in roles if match]
    assert sorted(found) == sorted([*ROLES, templates.KEY_VAULT_SECRETS_USER])
    for assignment in assignments:
        assert assignment["properties"]["principalType"] == "ServicePrincipal"
        assert len(assignment["properties"].get("description", "")) > 20 or "Key Vault" in json.dumps(assignment)
    (vault,) = resources(template, "Microsoft.Resources/deployments")
    assert vault["condition"] == "[not(empty(parameters('KeyVaultName')))]"
    assert site(template)["identity"]["type"] == "UserAssigned"


@pytest.mark.parametrize("name", FUNCTION_APPS)
def test_credentials_are_key_vault_references_when_a_vault_is_named(name: str) -> None:
    template = load(name)
    settings = app_settings(template)
    referenced = {key for key, value in settings.items() if "@Microsoft.KeyVault(" in value}
    assert referenced == set(KEY_VAULT_SECRETS)
    for key in KEY_VAULT_SECRETS:
        assert settings[key].startswith(f"[if(empty(parameters('KeyVaultName')), parameters('{key}'), ")
        assert f"SecretName={key})" in settings[key]
    for key in ("AzureClientSecret", "JoeSandboxAPIKey", *templates.IGNORED_JOEAZ):
        assert template["parameters"][key]["type"] == "securestring"
    assert site(template)["properties"]["keyVaultReferenceIdentity"].startswith(
        "[resourceId('Microsoft.ManagedIdentity"
    )


def test_flex_runs_python_311_from_its_deployment_container_without_deprecated_settings() -> None:
    template = load(templates.FLEX)
    config = site(template)["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["type"] == "blobContainer"
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert set(config["scaleAndConcurrency"]) == {"maximumInstanceCount", "instanceMemoryMB"}
    settings = app_settings(template)
    assert not [key for key in settings if key in NOT_ON_FLEX or key.startswith("WEBSITE_CONTENT")]
    (deployment,) = resources(template, "Microsoft.Web/sites/extensions")
    assert deployment["properties"] == {"packageUri": "[parameters('PackageURL')]", "remoteBuild": False}


def test_premium_runs_the_package_url_on_ep1_linux_python_311() -> None:
    template = load(templates.PREMIUM)
    (plan,) = resources(template, "Microsoft.Web/serverfarms")
    assert plan["sku"]["tier"] == "ElasticPremium"
    assert template["parameters"]["functionAppPlanSku"]["defaultValue"] == "EP1"
    assert plan["properties"]["reserved"] is True
    properties = site(template)["properties"]
    assert properties["siteConfig"]["linuxFxVersion"] == "Python|3.11"
    settings = app_settings(template)
    assert settings["WEBSITE_RUN_FROM_PACKAGE"] == "[parameters('PackageURL')]"
    assert not [key for key in settings if key.startswith("WEBSITE_CONTENT")]  # no Azure Files, so no key


@pytest.mark.parametrize("name", FUNCTION_APPS)
def test_package_url_default_is_a_versioned_release_asset(name: str) -> None:
    default = load(name)["parameters"]["PackageURL"]["defaultValue"]
    assert default == f"{templates.REPOSITORY}/releases/download/v{templates.version()}/{templates.package_name()}"
    assert "/main/" not in default
    assert "refs/heads" not in default


# --- the settings contract -----------------------------------------------------------------------


@pytest.mark.parametrize("name", FUNCTION_APPS)
def test_every_setting_the_code_reads_is_set_and_every_setting_set_is_read(name: str) -> None:
    reads = code_reads()
    set_here = set(app_settings(load(name)))
    assert set(NOT_SET_ON_AZURE) <= reads, "an exclusion names a setting the code no longer reads"
    assert not set(NOT_SET_ON_AZURE) & set_here, "an excluded setting is set after all"
    platform = {key for key in READ_BY_THE_PLATFORM if key in set_here}
    missing = reads - set(NOT_SET_ON_AZURE) - set_here
    assert not missing, f"read by the code but not set by {name}: {sorted(missing)}"
    unread = set_here - reads - platform
    assert not unread, f"set by {name} but read by nothing: {sorted(unread)}"


def connector_settings(template: dict[str, Any], **given: Any) -> dict[str, str]:
    """The connector's app settings as ARM would write them, for the template's defaults and
    the `given` parameter values."""
    values = {name: parameter.get("defaultValue") for name, parameter in template["parameters"].items()}
    values.update(given)
    return {key: arm.evaluate(value, values) for key, value in app_settings(template).items() if key in SETTING_NAMES}


@pytest.mark.parametrize("name", FUNCTION_APPS)
def test_template_defaults_are_the_code_defaults(name: str) -> None:
    template = load(name)
    written = connector_settings(template, **REQUIRED)
    assert {key: written[key] for key in REQUIRED} == REQUIRED
    assert Settings.from_mapping(written) == Settings.from_mapping(REQUIRED)


@pytest.mark.parametrize("name", FUNCTION_APPS)
def test_parameter_values_reach_the_settings_with_their_meaning(name: str) -> None:
    written = connector_settings(
        load(name),
        **REQUIRED,
        DefenderAlertSeverity=["high", "Medium"],
        JoeSandboxAnalysisParameters={"internet-access": True},
        JoeSandboxResubmitAfterDays="7",
        JoeSandboxResubmit=False,
        JoeSandboxAnalysisJobTimeout=45,
        DefenderIndicatorAllowList=["example.org", "10.0.0.0/8"],
        ExtraOsBinaryRules=["D:\\Windows\\*", "!C:\\Windows\\a,b.exe"],  # a comma within a rule
        FetchCommandLineTargets=False,
        StoragePrefix="contoso-a",
    )
    settings = Settings.from_mapping(written)
    assert settings.defender_alert_severity == {"High", "Medium"}
    assert settings.joe_sandbox_analysis_parameters == {"internet-access": True}
    assert settings.joe_sandbox_resubmit_after_days == 7
    assert settings.joe_sandbox_resubmit is False
    assert settings.joe_sandbox_analysis_job_timeout.total_seconds() == 45 * 60
    assert settings.defender_indicator_allow_list == ("example.org", "10.0.0.0/8")
    assert settings.extra_os_binary_rules == ("D:\\Windows\\*", "!C:\\Windows\\a,b.exe")
    assert settings.fetch_command_line_targets is False
    assert written["StoragePrefix"] == "contoso-a"


@pytest.mark.parametrize("name", FUNCTION_APPS)
def test_with_a_vault_the_credentials_are_key_vault_references(name: str) -> None:
    written = connector_settings(load(name), **REQUIRED, KeyVaultName="contoso-kv")
    for key in KEY_VAULT_SECRETS:
        assert written[key] == f"@Microsoft.KeyVault(VaultName=contoso-kv;SecretName={key})"
    without = connector_settings(load(name), **REQUIRED)
    assert {k: v for k, v in written.items() if k not in KEY_VAULT_SECRETS} == {
        k: v for k, v in without.items() if k not in KEY_VAULT_SECRETS
    }
    # Should the platform fail to resolve them, the app says so, naming each setting.
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping(written)
    assert {setting for setting, problem in caught.value.problems if "Key Vault reference" in problem} == set(
        KEY_VAULT_SECRETS
    )


def test_the_storage_connection_the_templates_set_is_the_identity_form_the_store_reads() -> None:
    settings = app_settings(load(templates.FLEX))
    endpoints = {
        "blob": "https://acct.blob.core.windows.net/",
        "queue": "https://acct.queue.core.windows.net/",
        "table": "https://acct.table.core.windows.net/",
    }
    values = {}
    for key, value in settings.items():
        if key.startswith("AzureWebJobsStorage"):
            kind = re.search(r"\.primaryEndpoints\.(\w+)\]$", value)
            values[key] = endpoints[kind.group(1)] if kind else "client-id-1" if value.endswith(".clientId]") else value
    connection = AzureStorageConnection.from_settings(values)
    assert connection.connection_string is None
    assert connection.table_service_uri == endpoints["table"]
    assert connection.queue_service_uri == endpoints["queue"]
    assert connection.credential == "managedidentity"
    assert connection.client_id == "client-id-1"


# --- the Logic App ------------------------------------------------------------------------------


def _workflow() -> dict[str, Any]:
    (workflow,) = resources(load(templates.LOGIC_APP), "Microsoft.Logic/workflows")
    return workflow


def test_logic_app_triggers_on_new_wdatp_alerts_and_filters_without_regard_to_case() -> None:
    definition = _workflow()["properties"]["definition"]
    (trigger,) = definition["triggers"].values()
    assert trigger["type"] == "ApiConnectionWebhook"
    assert trigger["inputs"]["path"] == "/subscriptions"
    assert trigger["inputs"]["body"]["resource"] == "alerts"
    condition = definition["actions"]["Severity_and_status_wanted"]
    checks = condition["expression"]["and"]
    assert len(checks) == 2
    for (wanted, actual), field in zip((c["contains"] for c in checks), ("severity", "status"), strict=True):
        assert wanted.startswith("@split(toLower(join(parameters('DefenderAlert")
        assert actual == f"@toLower(string(body('Alerts_-_Get_single_alert')?['{field}']))"
    assert condition["else"] == {"actions": {}}  # an alert filtered out ends the run as succeeded


def test_logic_app_calls_the_alert_endpoint_with_the_function_key_and_does_not_wait() -> None:
    workflow = _workflow()
    action = workflow["properties"]["definition"]["actions"]["Severity_and_status_wanted"]["actions"][
        "Call_joedefender"
    ]
    assert action["type"] == "Http"
    assert action["operationOptions"] == "DisableAsyncPattern"  # 202 means done, not "poll me"
    assert action["inputs"]["headers"]["x-functions-key"] == "@parameters('FunctionKey')"
    assert action["runtimeConfiguration"]["secureData"]["properties"] == ["inputs"]
    parameters = workflow["properties"]["parameters"]
    assert parameters["FunctionUrl"]["value"].endswith(f"'/{templates.ALERT_ROUTE}')]")
    # The route is the Functions app's alert intake, with function-level keys.
    app = build_app(Runtime(_never_opened, instance="templates"))
    alerts = bindings_of(app)[templates.INTAKE_FUNCTION][0]
    assert f"api/{alerts['route']}" == templates.ALERT_ROUTE
    assert alerts["authLevel"] == "FUNCTION"


def _resource_id(kind: str, *names: str) -> str:
    """ARM's resourceId in this resource group: the type's segments and the names interleaved."""
    namespace, *types = kind.split("/")
    path = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
    return f"/subscriptions/s/resourceGroups/g/providers/{namespace}/{path}"


def test_the_logic_app_is_given_the_intake_functions_own_key_which_cannot_open_status() -> None:
    """The Logic App's key opens intake only: the `alerts` function's key (listKeys of that
    function), not a host key, which opens every function, `status` with every alert's file
    names and URLs too."""
    app = build_app(Runtime(_never_opened, instance="templates"))
    keys = DeployedKeys.of(app)
    stand_ins: dict[str, Callable[..., Any]] = {
        "variables": {"functionAppName": "joedefenderabc"}.__getitem__,
        "resourceId": _resource_id,
        "listKeys": keys.list_keys,
    }
    expression = _workflow()["properties"]["parameters"]["FunctionKey"]["value"]
    given = arm.evaluate(expression, {}, stand_ins)
    assert keys.opens(app, templates.INTAKE_FUNCTION, given)
    assert not keys.opens(app, "status", given)
    assert not keys.opens(app, "ui", given)  # the operator's page neither
    assert given not in keys.host.values()
    assert given != keys.master


def _never_opened() -> AbstractContextManager[Hosted]:
    raise AssertionError("reading the bindings must not open the connector")


def test_logic_app_posts_joeaz_body_which_the_function_accepts() -> None:
    action = _workflow()["properties"]["definition"]["actions"]["Severity_and_status_wanted"]["actions"][
        "Call_joedefender"
    ]
    trigger_body = {"id": "da638640000000000001_1001", "machineId": "ab" * 20, "severity": "High"}
    alert = {"threatName": "Trojan:Win32/X", "detectionSource": "WindowsDefenderAv", "threatFamilyName": "X"}
    values: dict[str, object] = {"@triggerBody()": trigger_body}
    values |= {f"@body('Alerts_-_Get_single_alert')?['{k}']": v for k, v in alert.items()}
    body = {key: values[expression] for key, expression in action["inputs"]["body"].items()}
    assert set(body) == {"alert", "threat_name", "detection_source", "threat_family"}  # JoeAz's
    assert parse_body(json.dumps(body).encode()) == (trigger_body["id"], trigger_body["machineId"])


def test_logic_app_finds_the_function_app_by_the_name_the_function_templates_give_it() -> None:
    logic = load(templates.LOGIC_APP)["variables"]["functionAppName"]
    flex = load(templates.FLEX)["variables"]["functionAppName"]
    premium = load(templates.PREMIUM)["variables"]["functionAppName"]
    assert (
        logic.replace("FunctionAppName", "X")
        == flex.replace("FunctionName", "X")
        == premium.replace("functionAppName", "X")
    )


# --- the README -----------------------------------------------------------------------------------


def _azure_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Azure\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else len(readme)]


def test_readme_parameter_table_lists_exactly_the_templates_parameters() -> None:
    section = _azure_section()
    table = section[section.index("| Parameter |") :]
    table = table[: table.index("\n\n")]
    listed = []
    for row in table.splitlines()[2:]:
        listed += re.findall(r"`([A-Za-z_]+)`", row.split("|")[1])
    assert len(listed) == len(set(listed)), "a parameter is listed twice"
    declared = {name for template in ALL for name in load(template)["parameters"]}
    assert set(listed) == declared


def test_readme_deploy_buttons_point_at_the_templates_of_a_release_tag() -> None:
    section = _azure_section()
    for name in ALL:
        url = templates.template_url(name)
        assert f"https://portal.azure.com/#create/Microsoft.Template/uri/{quote(url, safe='')}" in section
        assert f"/v{templates.version()}/deploy/{name}" in url
    assert "refs/heads" not in section


# --- JoeAz's parameters files ----------------------------------------------------------------------

# JoeAz's template parameters and their types (joesecurity/ms-defender-azure @ ab63c46).
JOEAZ_COMMON = {
    "AzureClientID": "string",
    "AzureClientSecret": "securestring",
    "AzureTenantID": "string",
    "AzureStorageConnectionString": "securestring",
    "AzureStorageAccountKey": "securestring",
    "AppInsightsWorkspaceResourceID": "string",
    "JoeSandboxBaseURL": "string",
    "JoeSandboxAPIKey": "securestring",
    "JoeSandboxResubmit": "bool",
    "JoeSandboxAPIRetryTimeout": "int",
    "JoeSandboxAPIMaxRetry": "int",
    "JoeSandboxAnalysisJobTimeout": "int",
    "DefenderApiRetryTimeout": "int",
    "DefenderApiMaxRetry": "int",
    "MachineAvailabilityTimeout": "int",
    "MachineAvailabilityRetry": "int",
}
JOEAZ = {
    templates.FLEX: {**JOEAZ_COMMON, "FunctionName": "string"},
    templates.PREMIUM: {
        **JOEAZ_COMMON,
        "functionAppName": "string",
        "storageAccountType": "string",
        "functionAppPlanSku": "string",
    },
    templates.LOGIC_APP: {"PlaybookName": "string", "FunctionAppName": "string"},
}


@pytest.mark.parametrize("name", ALL)
def test_a_joeaz_parameters_file_deploys_unchanged(name: str) -> None:
    """ARM refuses a parameters file naming a parameter the template lacks, or a value of another type."""
    parameters = load(name)["parameters"]
    assert {key: parameters[key]["type"] for key in JOEAZ[name] if key in parameters} == JOEAZ[name]
    if name == templates.PREMIUM:
        assert {"Standard_LRS", "Standard_GRS", "Standard_RAGRS"} <= set(
            parameters["storageAccountType"]["allowedValues"]
        )
        assert {"EP1", "EP2", "EP3"} <= set(parameters["functionAppPlanSku"]["allowedValues"])


@pytest.mark.parametrize("name", ["functionapp-flex.json", "functionapp-premium.json"])
def test_the_deployment_names_the_operators_page_where_the_ui_function_serves_it(name: str) -> None:
    """`pageEndpoint` is the `ui` function's route under the host's prefix: the README tells the
    operator to open it with that function's own key, which no one else is given."""
    output = load(name)["outputs"]["pageEndpoint"]["value"]
    app = build_app(Runtime(_never_opened, instance="templates"))
    route = bindings_of(app)["ui"][0]["route"]
    assert route == "ui/{*path}"
    assert output.endswith(f"'/api/{route.split('/')[0]}')]")
