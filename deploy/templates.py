"""The ARM templates, generated: `python -m deploy.templates` writes them, `--check` fails if the
committed files differ from what this module makes.

Why a generator: the Flex Consumption and Premium templates share some fifty parameters (one per
setting) and most resources; written by hand twice they drift. The JSON files stay the product
(the portal's deploy buttons and `az deployment group create` read them); this is their source.

JoeAz's parameter names are kept (`FunctionName` on Flex, `functionAppName` on Premium, as JoeAz
spelled them; `AppInsightsWorkspaceResourceID`, `storageAccountType`, `functionAppPlanSku`, and
in the Logic App `PlaybookName`, `FunctionAppName`), so a JoeAz parameters file deploys as it is;
the function app's name is derived from it as JoeAz did, so the Logic App finds the function.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

# The project's public home. No public repository is known yet: this placeholder is the one
# place that names it (the templates' package URL and the README's deploy buttons derive from it).
REPOSITORY = "https://github.com/joedefender/joedefender"
RAW_BASE = REPOSITORY.replace("https://github.com/", "https://raw.githubusercontent.com/")


def version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def tag() -> str:
    return f"v{version()}"


def package_name() -> str:
    return f"joedefender-functionapp-{version()}.zip"


def package_url() -> str:
    """A release asset of a tagged version: what a deployment runs never moves under it."""
    return f"{REPOSITORY}/releases/download/{tag()}/{package_name()}"


def template_url(file_name: str) -> str:
    return f"{RAW_BASE}/{tag()}/deploy/{file_name}"


FLEX = "functionapp-flex.json"
PREMIUM = "functionapp-premium.json"
LOGIC_APP = "logicapp.json"

SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
WORKFLOW_SCHEMA = (
    "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"
)

# API versions, one per resource type.
WEB = "2024-04-01"
STORAGE = "2023-05-01"
IDENTITY = "2023-01-31"
AUTHORIZATION = "2022-04-01"
INSIGHTS = "2020-02-02"
WORKSPACE = "2023-09-01"
DEPLOYMENTS = "2022-09-01"
LOGIC = "2019-05-01"
CONNECTIONS = "2016-06-01"

# Built-in role definition ids (the same in every tenant).
BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"

ALERT_ROUTE = "api/alerts"  # the Functions app's intake (hosts/azure/functions.py: route "alerts")
# The function behind it, whose own key the Logic App is given: a function key opens that function
# only, where the host's keys open every function, `status` (every alert, file name and URL) too.
INTAKE_FUNCTION = "alerts"
DEPLOYMENT_CONTAINER = "app-package"


# --- the settings: one template parameter and one app setting each -----------------------------


@dataclass(frozen=True)
class Setting:
    """`kind` says how the parameter becomes the app setting's text: string, secret, int, bool,
    list (an array, joined with commas), jsonlist (an array, as a JSON array: its items may hold
    commas), json (an object) or optional (a string, blank = unset)."""

    name: str
    kind: str
    default: object
    description: str
    key_vault: bool = False  # read from the Key Vault when a vault is named
    constraints: tuple[tuple[str, object], ...] = ()  # ARM's own checks (minLength, allowedValues, ...)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "AzureTenantID",
        "string",
        "",
        "Entra tenant id (ignored when KeyVaultName is set: the vault's secret AzureTenantID is used).",
        key_vault=True,
    ),
    Setting(
        "AzureClientID",
        "string",
        "",
        "The app registration's client id (with KeyVaultName: the vault's secret AzureClientID).",
        key_vault=True,
    ),
    Setting(
        "AzureClientSecret",
        "secret",
        "",
        "Its client secret (with KeyVaultName: the vault's secret AzureClientSecret).",
        key_vault=True,
    ),
    Setting("AzureAuthorityHost", "string", "https://login.microsoftonline.com", "Entra authority (sovereign clouds)."),
    Setting(
        "DefenderApiBaseURL",
        "string",
        "https://api.securitycenter.microsoft.com",
        "Defender API (geo and government hosts).",
    ),
    Setting(
        "AlertSource",
        "string",
        "mde",
        "Where alerts are read and commented: mde (the Defender for Endpoint API) or graph (Microsoft Graph "
        "alerts_v2; machines and live response stay on the Defender API).",
    ),
    Setting(
        "GraphApiBaseURL",
        "string",
        "https://graph.microsoft.com",
        "Microsoft Graph (US Government: https://graph.microsoft.us, https://dod-graph.microsoft.us).",
    ),
    Setting(
        "GraphServiceSources",
        "list",
        ["microsoftDefenderForEndpoint"],
        "Graph serviceSource values whose alerts are listed when AlertSource is graph.",
    ),
    Setting("DefenderIncidentTags", "bool", False, "Tag each incident with its worst verdict (JoeSandbox:<verdict>)."),
    Setting("DefenderIncidentComments", "bool", False, "Comment each sample's verdict on its incident."),
    Setting("DefenderApiRetryTimeout", "int", 5, "Minutes one Defender call may spend retrying."),
    Setting("DefenderApiMaxRetry", "int", 5, "Retries of one Defender call."),
    Setting("MachineAvailabilityTimeout", "int", 10, "Minutes one wait for a machine to come online lasts."),
    Setting("MachineAvailabilityRetry", "int", 5, "How many such waits before collection gives up."),
    Setting(
        "JoeSandboxBaseURL",
        "string",
        "https://jbxcloud.joesecurity.org",
        "Joe Sandbox web base (the API is <base>/api).",
    ),
    Setting(
        "JoeSandboxAPIKey",
        "secret",
        "",
        "Joe Sandbox API key (with KeyVaultName: the vault's secret JoeSandboxAPIKey).",
        key_vault=True,
    ),
    Setting("JoeSandboxAcceptTAC", "bool", True, "Accept Joe Sandbox Cloud's terms and conditions on submission."),
    Setting(
        "JoeSandboxResubmit", "bool", True, "Analyse known samples again (true) or reuse the known verdict (false)."
    ),
    Setting(
        "JoeSandboxResubmitAfterDays",
        "optional",
        "",
        "Analyse again only when the newest analysis is older than this many days (blank: off).",
    ),
    Setting("JoeSandboxAPIRetryTimeout", "int", 5, "Minutes one Joe Sandbox call may spend retrying."),
    Setting("JoeSandboxAPIMaxRetry", "int", 3, "Retries of one Joe Sandbox call."),
    Setting("JoeSandboxAnalysisJobTimeout", "int", 30, "Minutes an analysis may take after submission."),
    Setting(
        "JoeSandboxAnalysisParameters", "json", {}, 'jbxapi submission parameters, e.g. {"internet-access": true}.'
    ),
    Setting(
        "JoeSandboxSystems", "list", [], "Analysis systems for Windows samples and URLs (empty: the server's default)."
    ),
    Setting(
        "JoeSandboxSystemsLinux",
        "list",
        [],
        "Analysis systems for Linux samples (empty: a Linux system of the server's).",
    ),
    Setting(
        "JoeSandboxSystemsMacOS",
        "list",
        [],
        "Analysis systems for macOS samples (empty: a macOS system of the server's).",
    ),
    Setting(
        "DefenderAlertSeverity",
        "list",
        ["UnSpecified", "Informational", "Low", "Medium", "High"],
        "Severities worked on (any case).",
    ),
    Setting("DefenderAlertStatus", "list", ["New", "InProgress"], "Statuses worked on (any case)."),
    Setting(
        "DefenderAlertDetectionSource",
        "list",
        ["WindowsDefenderAv", "WindowsDefenderAtp"],
        "Detection sources worked on.",
    ),
    Setting("DefenderAlertTitleFilter", "list", [], "Title substrings; when given, only matching alerts."),
    Setting("FetchQuarantinedFiles", "bool", True, "Recover files Defender quarantined."),
    Setting(
        "AllowQuarantineRestore", "bool", False, "Let the last quarantine strategy run MpCmdRun -Restore (destructive)."
    ),
    Setting("AnalyseProcessImages", "bool", True, "Analyse the image of Process evidence unless it is an OS file."),
    Setting("FetchCommandLineTargets", "bool", True, "Collect and analyse the file a system binary was told to run."),
    Setting(
        "ExtraOsBinaryRules",
        "jsonlist",
        [],
        "Rules added to the operating-system file table, e.g. D:\\Windows\\*, or !exceptions.",
    ),
    Setting(
        "DefenderAlertClassification", "bool", False, "Classify alerts with a malicious verdict TruePositive / Malware."
    ),
    Setting("DefenderIndicatorsEnabled", "bool", False, "Push indicators to Defender."),
    Setting("DefenderIndicatorVerdicts", "list", ["malicious"], "Verdicts that produce indicators."),
    Setting(
        "DefenderIndicatorActionForMaliciousFile", "string", "Audit", "Action on file hashes of malicious samples."
    ),
    Setting(
        "DefenderIndicatorActionForMaliciousIPAddressURL",
        "string",
        "Audit",
        "Action on domains, IPs and URLs of malicious samples.",
    ),
    Setting(
        "DefenderIndicatorActionForSuspiciousFile", "string", "Audit", "Action on file hashes of suspicious samples."
    ),
    Setting(
        "DefenderIndicatorActionForSuspiciousIPAddressURL",
        "string",
        "Audit",
        "Action on domains, IPs and URLs of suspicious samples.",
    ),
    Setting("DefenderIndicatorSeverityMalicious", "string", "High", "Severity of indicators from malicious verdicts."),
    Setting(
        "DefenderIndicatorSeveritySuspicious", "string", "Medium", "Severity of indicators from suspicious verdicts."
    ),
    Setting("DefenderIndicatorExpirationDays", "int", 30, "Days until an indicator expires."),
    Setting("DefenderIndicatorRbacGroupNames", "list", [], "Device groups the indicators apply to (empty: all)."),
    Setting("DefenderIndicatorAllowList", "list", [], "Values never pushed, added to the shipped allow-list."),
    Setting(
        "DefenderIndicatorSharedPlatforms",
        "list",
        [],
        "Shared platforms' host names never pushed, added to the shipped list.",
    ),
    Setting("DefenderIndicatorMaxPerSample", "int", 50, "Most indicators from one sample."),
    Setting("DefenderIndicatorMaxPerHour", "int", 5000, "Most indicators pushed in one hour."),
    Setting(
        "DefenderIndicatorTenantHeadroom",
        "int",
        1000,
        "Active indicators kept free below Defender's 15,000 per tenant.",
    ),
    Setting(
        "PollerEnabled", "bool", True, "The app's own poller (a timer, every minute); the Logic App is then optional."
    ),
    Setting("PollLookbackMinutes", "int", 60, "How far back the first poll looks."),
    Setting(
        "StoragePrefix",
        "string",
        "joedefender",
        "Prefix of the app's queues and tables (3 to 43 lowercase letters, digits, single hyphens).",
        constraints=(("minLength", 3), ("maxLength", 43)),
    ),
)

# JoeAz's parameters that no longer mean anything: accepted so a JoeAz parameters file deploys
# unchanged, and never written anywhere (no storage key is pasted into this deployment).
IGNORED_JOEAZ = ("AzureStorageConnectionString", "AzureStorageAccountKey")


def p(name: str) -> str:
    return f"parameters('{name}')"


def v(name: str) -> str:
    return f"variables('{name}')"


def arm(expression: str) -> str:
    return f"[{expression}]"


def setting_value(setting: Setting) -> str:
    """The app setting's value expression: the text the settings parser reads."""
    name = setting.name
    plain = {
        "string": p(name),
        "secret": p(name),
        "optional": p(name),
        "int": f"string({p(name)})",
        "bool": f"toLower(string({p(name)}))",
        "list": f"if(empty({p(name)}), '', join({p(name)}, ','))",
        "jsonlist": f"if(empty({p(name)}), '', string({p(name)}))",
        "json": f"string({p(name)})",
    }[setting.kind]
    if setting.key_vault:
        reference = f"format('@Microsoft.KeyVault(VaultName={{0}};SecretName={name})', {p('KeyVaultName')})"
        return arm(f"if(empty({p('KeyVaultName')}), {plain}, {reference})")
    return arm(plain)


ARM_TYPES = {
    "string": "string",
    "secret": "securestring",
    "optional": "string",
    "int": "int",
    "bool": "bool",
    "list": "array",
    "jsonlist": "array",
    "json": "object",
}


def setting_parameter(setting: Setting) -> dict[str, Any]:
    return {
        "type": ARM_TYPES[setting.kind],
        "defaultValue": setting.default,
        **dict(setting.constraints),
        "metadata": {"description": f"Setting {setting.name}: {setting.description} See the README's Settings."},
    }


# --- parameters shared by both function app templates -------------------------------------------


def infrastructure_parameters(name_parameter: str) -> dict[str, Any]:
    return {
        name_parameter: {
            "type": "string",
            "defaultValue": "joedefender",
            "minLength": 1,
            "maxLength": 20,
            "metadata": {
                "description": "Base name of the function app; three characters unique to the resource group are "
                "appended (as JoeAz did). The Logic App's FunctionAppName must be the same."
            },
        },
        "storageAccountType": {
            "type": "string",
            "defaultValue": "Standard_LRS",
            "allowedValues": ["Standard_LRS", "Standard_ZRS", "Standard_GRS", "Standard_RAGRS"],
            "metadata": {"description": "Replication of the app's storage account (queues, tables, host state)."},
        },
        "AppInsightsWorkspaceResourceID": {
            "type": "string",
            "defaultValue": "",
            "metadata": {
                "description": "Resource id of the Log Analytics workspace Application Insights writes to; "
                "empty: a workspace is created in this resource group."
            },
        },
        "KeyVaultName": {
            "type": "string",
            "defaultValue": "",
            "metadata": {
                "description": "A Key Vault (Azure RBAC permission model) holding the secrets AzureTenantID, "
                "AzureClientID, AzureClientSecret and JoeSandboxAPIKey; the app reads them as Key Vault references and "
                "its identity gets Key Vault Secrets User on the vault. Empty: the parameters' values are used."
            },
        },
        "KeyVaultResourceGroup": {
            "type": "string",
            "defaultValue": "",
            "metadata": {"description": "The vault's resource group (empty: this one)."},
        },
        "PackageURL": {
            "type": "string",
            "defaultValue": package_url(),
            "metadata": {
                "description": "The Functions package (`make package`), a release asset of a tagged version by default."
            },
        },
    }


def ignored_parameters() -> dict[str, Any]:
    return {
        name: {
            "type": "securestring",
            "defaultValue": "",
            "metadata": {
                "description": "JoeAz's; ignored. Accepted so a JoeAz parameters file deploys unchanged: no sample "
                "ever sits in a storage account, and the app reaches its own storage with its managed identity."
            },
        }
        for name in IGNORED_JOEAZ
    }


# --- resources -----------------------------------------------------------------------------------


def common_variables(name_parameter: str) -> dict[str, Any]:
    return {
        "functionAppName": arm(f"concat(toLower({p(name_parameter)}), take(uniqueString(resourceGroup().id), 3))"),
        "storageAccountName": arm(
            f"concat('joedefender', take(uniqueString(resourceGroup().id, {p(name_parameter)}), 13))"
        ),
        "identityName": arm(f"concat({v('functionAppName')}, '-identity')"),
        "planName": arm(f"concat({v('functionAppName')}, '-plan')"),
        "insightsName": arm(v("functionAppName")),
        "workspaceName": arm(f"concat({v('functionAppName')}, '-logs')"),
        "workspaceId": arm(
            f"if(empty({p('AppInsightsWorkspaceResourceID')}), "
            f"resourceId('Microsoft.OperationalInsights/workspaces', {v('workspaceName')}), "
            f"{p('AppInsightsWorkspaceResourceID')})"
        ),
        "keyVaultResourceGroup": arm(
            f"if(empty({p('KeyVaultResourceGroup')}), resourceGroup().name, {p('KeyVaultResourceGroup')})"
        ),
        "queues": arm(
            f"createArray(concat({p('StoragePrefix')}, '-work'), concat({p('StoragePrefix')}, '-liveresponse'))"
        ),
        # As adapters/azure/store.py's table_name: letters and digits only, starting with a letter.
        "tables": arm(
            f"createArray(concat(if(contains('0123456789', first({p('StoragePrefix')})), 't', ''), "
            f"replace({p('StoragePrefix')}, '-', ''), 'state'))"
        ),
    }


def resource_id(kind: str, *names: str) -> str:
    return f"resourceId('{kind}', {', '.join(names)})"


STORAGE_ID = resource_id("Microsoft.Storage/storageAccounts", v("storageAccountName"))
IDENTITY_ID = resource_id("Microsoft.ManagedIdentity/userAssignedIdentities", v("identityName"))
INSIGHTS_ID = resource_id("Microsoft.Insights/components", v("insightsName"))
SITE_ID = resource_id("Microsoft.Web/sites", v("functionAppName"))
PLAN_ID = resource_id("Microsoft.Web/serverfarms", v("planName"))


def scope_of(kind: str, name: str) -> str:
    """An extension resource's `scope`: the target as `<type>/<name>`, the form ARM documents."""
    return f"format('{kind}/{{0}}', {name})"


STORAGE_SCOPE = scope_of("Microsoft.Storage/storageAccounts", v("storageAccountName"))
INSIGHTS_SCOPE = scope_of("Microsoft.Insights/components", v("insightsName"))


def identity() -> dict[str, Any]:
    return {
        "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
        "apiVersion": IDENTITY,
        "name": arm(v("identityName")),
        "location": arm("resourceGroup().location"),
        "metadata": {
            "description": "The app's one identity, created before the app so its roles exist when the app starts: "
            "host storage, the app's queues and tables, telemetry, and the Key Vault when one is named."
        },
    }


def storage_account(*, deployment_container: bool) -> list[dict[str, Any]]:
    account = {
        "type": "Microsoft.Storage/storageAccounts",
        "apiVersion": STORAGE,
        "name": arm(v("storageAccountName")),
        "location": arm("resourceGroup().location"),
        "kind": "StorageV2",
        "sku": {"name": arm(p("storageAccountType"))},
        "metadata": {
            "description": "The app's own storage: the Functions host's state, the work queues and the state tables. "
            "No sample is ever stored here, so Defender for Storage can stay on.",
            "checkov": [
                "checkov:skip=CKV_AZURE_35: the app has no virtual network (Flex Consumption and Premium without VNet "
                "integration reach storage over its public endpoint), so a default-deny firewall would lock the app "
                "out; access needs Entra ID (shared keys are off) and a data role on this account",
                "checkov:skip=CKV_AZURE_59: as CKV_AZURE_35: the public endpoint is how the app reaches its storage; "
                "with shared-key access disabled only identities holding a data role get in",
                "checkov:skip=CKV_AZURE_206: replication is the deployer's choice (storageAccountType); the account "
                "holds work in progress, not samples or evidence, so locally redundant is the default",
                "checkov:skip=CKV_AZURE_43: checkov cannot evaluate the name expression; it is 'joedefender' and 13 "
                "characters of uniqueString (lowercase letters and digits), 24 in all, within the naming rules",
            ],
        },
        "properties": {
            "supportsHttpsTrafficOnly": True,
            "minimumTlsVersion": "TLS1_2",
            "allowBlobPublicAccess": False,
            "allowSharedKeyAccess": False,
            "defaultToOAuthAuthentication": True,
            "allowCrossTenantReplication": False,
            "publicNetworkAccess": "Enabled",
            "networkAcls": {"defaultAction": "Allow", "bypass": "AzureServices"},
            "encryption": {
                "keySource": "Microsoft.Storage",
                "requireInfrastructureEncryption": True,
                "services": {
                    "blob": {"enabled": True, "keyType": "Account"},
                    "file": {"enabled": True, "keyType": "Account"},
                    "queue": {"enabled": True, "keyType": "Account"},
                    "table": {"enabled": True, "keyType": "Account"},
                },
            },
        },
    }
    depends = [arm(STORAGE_ID)]
    resources: list[dict[str, Any]] = [account]
    blob_service = {
        "type": "Microsoft.Storage/storageAccounts/blobServices",
        "apiVersion": STORAGE,
        "name": arm(f"concat({v('storageAccountName')}, '/default')"),
        "dependsOn": depends,
        "properties": {
            "deleteRetentionPolicy": {"enabled": True, "days": 7},
            "containerDeleteRetentionPolicy": {"enabled": True, "days": 7},
        },
    }
    resources.append(blob_service)
    if deployment_container:
        resources.append(
            {
                "type": "Microsoft.Storage/storageAccounts/blobServices/containers",
                "apiVersion": STORAGE,
                "name": arm(f"concat({v('storageAccountName')}, '/default/{DEPLOYMENT_CONTAINER}')"),
                "dependsOn": [
                    arm(
                        resource_id(
                            "Microsoft.Storage/storageAccounts/blobServices", v("storageAccountName"), "'default'"
                        )
                    )
                ],
                "properties": {"publicAccess": "None"},
                "metadata": {
                    "description": "Flex Consumption's deployment container: the platform keeps the package here."
                },
            }
        )
    resources.append(
        {
            "type": "Microsoft.Storage/storageAccounts/queueServices",
            "apiVersion": STORAGE,
            "name": arm(f"concat({v('storageAccountName')}, '/default')"),
            "dependsOn": depends,
        }
    )
    resources.append(
        {
            "type": "Microsoft.Storage/storageAccounts/queueServices/queues",
            "apiVersion": STORAGE,
            "name": arm(f"concat({v('storageAccountName')}, '/default/', {v('queues')}[copyIndex()])"),
            "copy": {"name": "queues", "count": arm(f"length({v('queues')})")},
            "dependsOn": [
                arm(
                    resource_id("Microsoft.Storage/storageAccounts/queueServices", v("storageAccountName"), "'default'")
                )
            ],
            "metadata": {
                "description": "The work queues the queue triggers bind to (StoragePrefix-work, -liveresponse)."
            },
        }
    )
    resources.append(
        {
            "type": "Microsoft.Storage/storageAccounts/tableServices",
            "apiVersion": STORAGE,
            "name": arm(f"concat({v('storageAccountName')}, '/default')"),
            "dependsOn": depends,
        }
    )
    resources.append(
        {
            "type": "Microsoft.Storage/storageAccounts/tableServices/tables",
            "apiVersion": STORAGE,
            "name": arm(f"concat({v('storageAccountName')}, '/default/', {v('tables')}[copyIndex()])"),
            "copy": {"name": "tables", "count": arm(f"length({v('tables')})")},
            "dependsOn": [
                arm(
                    resource_id("Microsoft.Storage/storageAccounts/tableServices", v("storageAccountName"), "'default'")
                )
            ],
            "metadata": {
                "description": "The connector's state: jobs, work items, leases, history, the shared rate budget."
            },
        }
    )
    return resources


def monitoring() -> list[dict[str, Any]]:
    return [
        {
            "condition": arm(f"empty({p('AppInsightsWorkspaceResourceID')})"),
            "type": "Microsoft.OperationalInsights/workspaces",
            "apiVersion": WORKSPACE,
            "name": arm(v("workspaceName")),
            "location": arm("resourceGroup().location"),
            "properties": {"sku": {"name": "PerGB2018"}, "retentionInDays": 30},
        },
        {
            "type": "Microsoft.Insights/components",
            "apiVersion": INSIGHTS,
            "name": arm(v("insightsName")),
            "location": arm("resourceGroup().location"),
            "kind": "web",
            "dependsOn": [arm(resource_id("Microsoft.OperationalInsights/workspaces", v("workspaceName")))],
            "properties": {
                "Application_Type": "web",
                "WorkspaceResourceId": arm(v("workspaceId")),
                "DisableLocalAuth": True,
            },
            "metadata": {
                "description": "Telemetry: ingestion needs Entra ID (local auth off), so the instrumentation key "
                "alone cannot write; the app's identity has Monitoring Metrics Publisher on it."
            },
        },
    ]


def role_assignment_name(scope_id: str, role: str) -> str:
    return f"guid({scope_id}, {IDENTITY_ID}, '{role}')"


def role_assignment_id(scope_id: str, role: str) -> str:
    """Role assignments are extension resources: dependsOn needs their id under the scope."""
    name = role_assignment_name(scope_id, role)
    return f"extensionResourceId({scope_id}, 'Microsoft.Authorization/roleAssignments', {name})"


def role_assignment(scope_id: str, scope_kind: str, role: str, reason: str, depends: list[str]) -> dict[str, Any]:
    return {
        "type": "Microsoft.Authorization/roleAssignments",
        "apiVersion": AUTHORIZATION,
        "scope": arm(SCOPES[scope_id]),
        "name": arm(role_assignment_name(scope_id, role)),
        "dependsOn": [arm(IDENTITY_ID), *depends],
        "properties": {
            "roleDefinitionId": arm(f"subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '{role}')"),
            "principalId": arm(f"reference({IDENTITY_ID}, '{IDENTITY}').principalId"),
            "principalType": "ServicePrincipal",
            "description": reason,
        },
        "metadata": {"description": f"{scope_kind}: {reason}"},
    }


SCOPES = {STORAGE_ID: STORAGE_SCOPE, INSIGHTS_ID: INSIGHTS_SCOPE}


def role_assignments() -> list[dict[str, Any]]:
    storage = [arm(STORAGE_ID)]
    return [
        role_assignment(
            STORAGE_ID,
            "Storage Blob Data Owner on the app's storage account",
            BLOB_DATA_OWNER,
            "The Functions host keeps its locks and keys in blobs: it leases blobs so one instance runs each timer "
            "(blob leases need Owner, not Contributor), and on Flex Consumption the platform reads the package "
            "from the deployment container.",
            storage,
        ),
        role_assignment(
            STORAGE_ID,
            "Storage Queue Data Contributor on the app's storage account",
            QUEUE_DATA_CONTRIBUTOR,
            "The queue triggers read and delete messages, the store sends and updates them (delays, "
            "checkpoints), and the host creates the -poison queues.",
            storage,
        ),
        role_assignment(
            STORAGE_ID,
            "Storage Table Data Contributor on the app's storage account",
            TABLE_DATA_CONTRIBUTOR,
            "The connector's state lives in tables (jobs, work items, leases, history, the tenant's shared "
            "rate budget), and the host writes its diagnostic events there.",
            storage,
        ),
        role_assignment(
            INSIGHTS_ID,
            "Monitoring Metrics Publisher on Application Insights",
            MONITORING_METRICS_PUBLISHER,
            "Application Insights accepts only Entra-authenticated telemetry (local auth off); this role lets "
            "the app send its logs and requests.",
            [arm(INSIGHTS_ID)],
        ),
    ]


def key_vault_access() -> dict[str, Any]:
    """Key Vault Secrets User on the named vault, in its resource group (a nested deployment)."""
    vault_id = "resourceId('Microsoft.KeyVault/vaults', parameters('vaultName'))"
    return {
        "condition": arm(f"not(empty({p('KeyVaultName')}))"),
        "type": "Microsoft.Resources/deployments",
        "apiVersion": DEPLOYMENTS,
        "name": arm(f"concat({v('functionAppName')}, '-keyvault-access')"),
        "resourceGroup": arm(v("keyVaultResourceGroup")),
        "dependsOn": [arm(IDENTITY_ID)],
        "metadata": {
            "description": "Key Vault Secrets User on the vault: the platform reads the four secrets (Get) to "
            "resolve the app's Key Vault references. Nothing else; the app never lists or writes secrets."
        },
        "properties": {
            "mode": "Incremental",
            "expressionEvaluationOptions": {"scope": "inner"},
            "parameters": {
                "vaultName": {"value": arm(p("KeyVaultName"))},
                "principalId": {"value": arm(f"reference({IDENTITY_ID}, '{IDENTITY}').principalId")},
            },
            "template": {
                "$schema": SCHEMA,
                "contentVersion": "1.0.0.0",
                "parameters": {"vaultName": {"type": "string"}, "principalId": {"type": "string"}},
                "resources": [
                    {
                        "type": "Microsoft.Authorization/roleAssignments",
                        "apiVersion": AUTHORIZATION,
                        "scope": arm(scope_of("Microsoft.KeyVault/vaults", "parameters('vaultName')")),
                        "name": arm(f"guid({vault_id}, parameters('principalId'), '{KEY_VAULT_SECRETS_USER}')"),
                        "properties": {
                            "roleDefinitionId": arm(
                                "subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
                                f"'{KEY_VAULT_SECRETS_USER}')"
                            ),
                            "principalId": "[parameters('principalId')]",
                            "principalType": "ServicePrincipal",
                            "description": "Resolve the function app's Key Vault references.",
                        },
                    }
                ],
            },
        },
    }


def host_storage_settings() -> list[dict[str, str]]:
    """Identity-based AzureWebJobsStorage: service URIs (every cloud), the managed identity, its client id."""
    endpoints = f"reference({STORAGE_ID}, '{STORAGE}').primaryEndpoints"
    client_id = f"reference({IDENTITY_ID}, '{IDENTITY}').clientId"
    return [
        {"name": "AzureWebJobsStorage__blobServiceUri", "value": arm(f"{endpoints}.blob")},
        {"name": "AzureWebJobsStorage__queueServiceUri", "value": arm(f"{endpoints}.queue")},
        {"name": "AzureWebJobsStorage__tableServiceUri", "value": arm(f"{endpoints}.table")},
        {"name": "AzureWebJobsStorage__credential", "value": "managedidentity"},
        {"name": "AzureWebJobsStorage__clientId", "value": arm(client_id)},
        {
            "name": "APPLICATIONINSIGHTS_CONNECTION_STRING",
            "value": arm(f"reference({INSIGHTS_ID}, '{INSIGHTS}').ConnectionString"),
        },
        {
            "name": "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
            "value": arm(f"concat('ClientId=', {client_id}, ';Authorization=AAD')"),
        },
    ]


def connector_settings() -> list[dict[str, str]]:
    return [{"name": setting.name, "value": setting_value(setting)} for setting in SETTINGS]


def site_config(extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "minTlsVersion": "1.2",
        "scmMinTlsVersion": "1.2",
        "ftpsState": "Disabled",
        "http20Enabled": True,
        "remoteDebuggingEnabled": False,
        **extra,
    }


def basic_publishing_off() -> list[dict[str, Any]]:
    """FTP and the SCM site's user name and password off: nothing deploys with a shared password."""
    return [
        {
            "type": "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
            "apiVersion": WEB,
            "name": arm(f"concat({v('functionAppName')}, '/{kind}')"),
            "dependsOn": [arm(SITE_ID)],
            "properties": {"allow": False},
        }
        for kind in ("ftp", "scm")
    ]


def site_identity() -> dict[str, Any]:
    return {"type": "UserAssigned", "userAssignedIdentities": {arm(IDENTITY_ID): {}}}


def function_app_outputs() -> dict[str, Any]:
    host = f"reference({SITE_ID}, '{WEB}').defaultHostName"
    return {
        "functionAppName": {"type": "string", "value": arm(v("functionAppName"))},
        "alertEndpoint": {"type": "string", "value": arm(f"concat('https://', {host}, '/{ALERT_ROUTE}')")},
        "statusEndpoint": {"type": "string", "value": arm(f"concat('https://', {host}, '/api/status')")},
        # The operator's page: open it with the `ui` function's key as ?code= (README, "The operator's page").
        "pageEndpoint": {"type": "string", "value": arm(f"concat('https://', {host}, '/api/ui')")},
        "identityPrincipalId": {"type": "string", "value": arm(f"reference({IDENTITY_ID}, '{IDENTITY}').principalId")},
    }


def site_dependencies() -> list[str]:
    return [
        arm(PLAN_ID),
        arm(STORAGE_ID),
        arm(INSIGHTS_ID),
        arm(IDENTITY_ID),
        "queues",
        "tables",
        *[
            arm(role_assignment_id(STORAGE_ID, role))
            for role in (BLOB_DATA_OWNER, QUEUE_DATA_CONTRIBUTOR, TABLE_DATA_CONTRIBUTOR)
        ],
        arm(resource_id("Microsoft.Resources/deployments", f"concat({v('functionAppName')}, '-keyvault-access')")),
    ]


def function_app_template(
    *,
    description: str,
    name_parameter: str,
    plan_parameters: dict[str, Any],
    plan: dict[str, Any],
    site_properties: dict[str, Any],
    platform_settings: list[dict[str, str]],
    extra: list[dict[str, Any]],
    deployment_container: bool,
) -> dict[str, Any]:
    config = dict(site_properties["siteConfig"])
    config["appSettings"] = platform_settings + host_storage_settings() + connector_settings()
    site: dict[str, Any] = {
        "type": "Microsoft.Web/sites",
        "apiVersion": WEB,
        "name": arm(v("functionAppName")),
        "location": arm("resourceGroup().location"),
        "kind": "functionapp,linux",
        "identity": site_identity(),
        "dependsOn": site_dependencies(),
        "properties": {
            "serverFarmId": arm(PLAN_ID),
            "httpsOnly": True,
            "clientCertEnabled": False,
            "publicNetworkAccess": "Enabled",
            "keyVaultReferenceIdentity": arm(IDENTITY_ID),
            **site_properties,
            "siteConfig": config,
        },
    }
    parameters = {
        **infrastructure_parameters(name_parameter),
        **plan_parameters,
        **{setting.name: setting_parameter(setting) for setting in SETTINGS},
        **ignored_parameters(),
    }
    return {
        "$schema": SCHEMA,
        "contentVersion": "1.0.0.0",
        "metadata": {
            "description": description,
            "generator": "deploy/templates.py (edit it, then run `make templates`)",
            "version": version(),
        },
        "parameters": parameters,
        "variables": common_variables(name_parameter),
        "resources": [
            identity(),
            *storage_account(deployment_container=deployment_container),
            *monitoring(),
            *role_assignments(),
            key_vault_access(),
            plan,
            site,
            *basic_publishing_off(),
            *extra,
        ],
        "outputs": function_app_outputs(),
    }


def flex_template() -> dict[str, Any]:
    endpoints = f"reference({STORAGE_ID}, '{STORAGE}').primaryEndpoints"
    plan = {
        "type": "Microsoft.Web/serverfarms",
        "apiVersion": WEB,
        "name": arm(v("planName")),
        "location": arm("resourceGroup().location"),
        "kind": "functionapp",
        "sku": {"tier": "FlexConsumption", "name": "FC1"},
        "properties": {"reserved": True},
    }
    properties = {
        "functionAppConfig": {
            "deployment": {
                "storage": {
                    "type": "blobContainer",
                    "value": arm(f"concat({endpoints}.blob, '{DEPLOYMENT_CONTAINER}')"),
                    "authentication": {
                        "type": "UserAssignedIdentity",
                        "userAssignedIdentityResourceId": arm(IDENTITY_ID),
                    },
                }
            },
            "scaleAndConcurrency": {
                "maximumInstanceCount": arm(p("MaximumInstanceCount")),
                "instanceMemoryMB": arm(p("InstanceMemoryMB")),
            },
            "runtime": {"name": "python", "version": "3.11"},
        },
        "siteConfig": site_config({}),
    }
    # The one-time deployment from PackageURL, as JoeAz deployed to Flex. The docs do not say
    # whether ARM's onedeploy still works with the SCM site's basic credentials off (it authenticates
    # as ARM, not with them); not verifiable offline. If it fails, deploy the zip with
    # `az functionapp deployment source config-zip` (Entra ID) and redeploy the template.
    deploy_package = {
        "type": "Microsoft.Web/sites/extensions",
        "apiVersion": WEB,
        "name": arm(f"concat({v('functionAppName')}, '/onedeploy')"),
        "dependsOn": [
            arm(SITE_ID),
            *[
                arm(
                    resource_id("Microsoft.Web/sites/basicPublishingCredentialsPolicies", v("functionAppName"), repr(k))
                )
                for k in ("ftp", "scm")
            ],
        ],
        "properties": {"packageUri": arm(p("PackageURL")), "remoteBuild": False},
        "metadata": {
            "description": "Puts the package (dependencies included, so no remote build) into the deployment container."
        },
    }
    return function_app_template(
        description="joedefender on Azure Functions, Flex Consumption plan (Linux, Python 3.11).",
        name_parameter="FunctionName",
        plan_parameters={
            "MaximumInstanceCount": {
                "type": "int",
                "defaultValue": 100,
                "minValue": 40,
                "maxValue": 1000,
                "metadata": {"description": "Most instances the plan scales out to (JoeAz: 100)."},
            },
            "InstanceMemoryMB": {
                "type": "int",
                "defaultValue": 2048,
                "allowedValues": [512, 2048, 4096],
                "metadata": {"description": "Memory of each instance; samples are streamed, so 2048 is plenty."},
            },
        },
        plan=plan,
        site_properties=properties,
        # Flex Consumption takes the runtime from functionAppConfig: FUNCTIONS_WORKER_RUNTIME,
        # FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE and WEBSITE_CONTENT* must not be set.
        platform_settings=[],
        extra=[deploy_package],
        deployment_container=True,
    )


def premium_template() -> dict[str, Any]:
    plan = {
        "type": "Microsoft.Web/serverfarms",
        "apiVersion": WEB,
        "name": arm(v("planName")),
        "location": arm("resourceGroup().location"),
        "kind": "elastic",
        "sku": {"tier": "ElasticPremium", "name": arm(p("functionAppPlanSku"))},
        "properties": {"reserved": True, "maximumElasticWorkerCount": arm(p("MaximumElasticWorkerCount"))},
    }
    properties = {"siteConfig": site_config({"linuxFxVersion": "Python|3.11"})}
    return function_app_template(
        description="joedefender on Azure Functions, Elastic Premium plan (Linux, Python 3.11).",
        name_parameter="functionAppName",
        plan_parameters={
            "functionAppPlanSku": {
                "type": "string",
                "defaultValue": "EP1",
                "allowedValues": ["EP1", "EP2", "EP3"],
                "metadata": {"description": "The Elastic Premium plan's size."},
            },
            "MaximumElasticWorkerCount": {
                "type": "int",
                "defaultValue": 20,
                "minValue": 1,
                "maxValue": 100,
                "metadata": {"description": "Most instances the plan scales out to (JoeAz: 20)."},
            },
        },
        plan=plan,
        site_properties=properties,
        # No Azure Files content share (WEBSITE_CONTENT*): the app runs from the package URL and writes no
        # files, the case storage-considerations.md ("Create an app without Azure Files") allows, so no
        # storage key is needed anywhere. Not deployed from here (no ARM engine offline).
        platform_settings=[
            {"name": "FUNCTIONS_EXTENSION_VERSION", "value": "~4"},
            {"name": "FUNCTIONS_WORKER_RUNTIME", "value": "python"},
            {"name": "WEBSITE_RUN_FROM_PACKAGE", "value": arm(p("PackageURL"))},
        ],
        extra=[],
        deployment_container=False,
    )


# --- the Logic App --------------------------------------------------------------------------------


WDATP_API = "subscriptionResourceId('Microsoft.Web/locations/managedApis', resourceGroup().location, 'wdatp')"


def logic_app_template() -> dict[str, Any]:
    function_app = "variables('functionAppName')"
    site = f"resourceId('Microsoft.Web/sites', {function_app})"
    connection = "variables('connectionName')"
    get_alert = "Alerts_-_Get_single_alert"
    alert = f"body('{get_alert}')"
    definition = {
        "$schema": WORKFLOW_SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": {
            "$connections": {"type": "Object", "defaultValue": {}},
            "DefenderAlertSeverity": {"type": "Array", "defaultValue": []},
            "DefenderAlertStatus": {"type": "Array", "defaultValue": []},
            "FunctionUrl": {"type": "String", "defaultValue": ""},
            "FunctionKey": {"type": "SecureString", "defaultValue": ""},
        },
        "triggers": {
            "Triggers_-_Trigger_when_new_WDATP_alert_occurs": {
                "type": "ApiConnectionWebhook",
                "inputs": {
                    "host": {"connection": {"name": "@parameters('$connections')['wdatp']['connectionId']"}},
                    "body": {
                        "clientState": "flow",
                        "changeType": "created",
                        "resource": "alerts",
                        "expirationDateTime": "2038-09-20T12:00:00Z",
                        "notificationUrl": "@{listCallbackUrl()}",
                    },
                    "path": "/subscriptions",
                },
            }
        },
        "actions": {
            # The trigger's body is documented only as "the alert"; reading the alert again gives the
            # severity and status for sure (as JoeAz's Logic App did).
            get_alert: {
                "type": "ApiConnection",
                "runAfter": {},
                "inputs": {
                    "host": {"connection": {"name": "@parameters('$connections')['wdatp']['connectionId']"}},
                    "method": "get",
                    "path": "/api/alerts/@{encodeURIComponent(triggerBody()?['id'])}",
                },
            },
            "Severity_and_status_wanted": {
                "type": "If",
                "runAfter": {get_alert: ["Succeeded"]},
                # Case-insensitive, as the function's own filters: both sides lower-cased.
                "expression": {
                    "and": [
                        {
                            "contains": [
                                "@split(toLower(join(parameters('DefenderAlertSeverity'), ',')), ',')",
                                f"@toLower(string({alert}?['severity']))",
                            ]
                        },
                        {
                            "contains": [
                                "@split(toLower(join(parameters('DefenderAlertStatus'), ',')), ',')",
                                f"@toLower(string({alert}?['status']))",
                            ]
                        },
                    ]
                },
                "actions": {
                    "Call_joedefender": {
                        "type": "Http",
                        "inputs": {
                            "method": "POST",
                            "uri": "@parameters('FunctionUrl')",
                            "headers": {
                                "Content-Type": "application/json",
                                "x-functions-key": "@parameters('FunctionKey')",
                            },
                            # JoeAz's body, which the function accepts as it is.
                            "body": {
                                "alert": "@triggerBody()",
                                "threat_name": f"@{alert}?['threatName']",
                                "detection_source": f"@{alert}?['detectionSource']",
                                "threat_family": f"@{alert}?['threatFamilyName']",
                            },
                            # 429, 408 and 5xx (503: the store could not record) are delivered again.
                            "retryPolicy": {
                                "type": "exponential",
                                "count": 6,
                                "interval": "PT20S",
                                "maximumInterval": "PT10M",
                            },
                        },
                        # The function answers 202 at once and has nothing to poll: no async pattern.
                        "operationOptions": "DisableAsyncPattern",
                        "limit": {"timeout": "PT2M"},
                        "runtimeConfiguration": {"secureData": {"properties": ["inputs"]}},
                    }
                },
                "else": {"actions": {}},
            },
        },
        "outputs": {},
    }
    return {
        "$schema": SCHEMA,
        "contentVersion": "1.0.0.0",
        "metadata": {
            "description": "Sends every new Defender for Endpoint alert whose severity and status are wanted to "
            "joedefender's function; the run succeeds as soon as the function has recorded the alert (202).",
            "generator": "deploy/templates.py (edit it, then run `make templates`)",
            "version": version(),
        },
        "parameters": {
            "PlaybookName": {
                "type": "string",
                "defaultValue": "SubmitDefenderAlertsToJoeSandbox",
                "metadata": {"description": "Name of the Logic App."},
            },
            "FunctionAppName": {
                "type": "string",
                "defaultValue": "joedefender",
                "metadata": {
                    "description": "The function app template's FunctionName (Flex) or functionAppName (Premium), "
                    "deployed to this resource group."
                },
            },
            "DefenderAlertSeverity": {
                "type": "array",
                "defaultValue": ["UnSpecified", "Informational", "Low", "Medium", "High"],
                "metadata": {"description": "Severities sent to the function (any case)."},
            },
            "DefenderAlertStatus": {
                "type": "array",
                "defaultValue": ["New", "InProgress"],
                "metadata": {"description": "Statuses sent to the function (any case)."},
            },
        },
        "variables": {
            # As the function app templates (and JoeAz) derive it, so the same base name finds the app.
            "functionAppName": arm(
                f"concat(toLower({p('FunctionAppName')}), take(uniqueString(resourceGroup().id), 3))"
            ),
            "connectionName": "[concat('wdatp-', parameters('PlaybookName'))]",
        },
        "resources": [
            {
                "type": "Microsoft.Web/connections",
                "apiVersion": CONNECTIONS,
                "name": arm(connection),
                "location": arm("resourceGroup().location"),
                "metadata": {
                    "description": "The Defender for Endpoint (WDATP) connection; authorise it once after deployment."
                },
                "properties": {
                    "displayName": "Microsoft Defender for Endpoint",
                    "api": {"id": arm(WDATP_API)},
                },
            },
            {
                "type": "Microsoft.Logic/workflows",
                "apiVersion": LOGIC,
                "name": arm(p("PlaybookName")),
                "location": arm("resourceGroup().location"),
                "dependsOn": [arm(f"resourceId('Microsoft.Web/connections', {connection})")],
                "properties": {
                    "state": "Enabled",
                    "definition": definition,
                    "parameters": {
                        "$connections": {
                            "value": {
                                "wdatp": {
                                    "connectionId": arm(f"resourceId('Microsoft.Web/connections', {connection})"),
                                    "connectionName": arm(connection),
                                    "id": arm(WDATP_API),
                                }
                            }
                        },
                        "DefenderAlertSeverity": {"value": arm(p("DefenderAlertSeverity"))},
                        "DefenderAlertStatus": {"value": arm(p("DefenderAlertStatus"))},
                        "FunctionUrl": {
                            "value": arm(
                                f"concat('https://', reference({site}, '{WEB}').defaultHostName, '/{ALERT_ROUTE}')"
                            )
                        },
                        # The intake function's own key (listKeys of that function), never a host key.
                        # The function must exist: deploy this once the app runs its package.
                        "FunctionKey": {
                            "value": arm(
                                f"listKeys(resourceId('Microsoft.Web/sites/functions', {function_app}, "
                                f"'{INTAKE_FUNCTION}'), '{WEB}').default"
                            )
                        },
                    },
                },
            },
        ],
        "outputs": {"playbook": {"type": "string", "value": arm(p("PlaybookName"))}},
    }


TEMPLATES: dict[str, Callable[[], dict[str, Any]]] = {
    FLEX: flex_template,
    PREMIUM: premium_template,
    LOGIC_APP: logic_app_template,
}


def rendered(file_name: str) -> str:
    return json.dumps(TEMPLATES[file_name](), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if a committed template differs")
    args = parser.parse_args(argv)
    stale = []
    for file_name in TEMPLATES:
        path = DEPLOY / file_name
        text = rendered(file_name)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(file_name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run `make templates`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
