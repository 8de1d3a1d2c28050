"""The tenant's alerts as Graph `security/alerts_v2` shows them (GD `resources/security-alert.md`,
`security-alertevidence.md` and the list example): built on every read from the MDE emulator's
alert records, so a change through either API shows in both.

Assumptions (docs silent; the README lists them under "to confirm on a real tenant"):
- an MDE alert's Graph `id` (and `providerAlertId`) is its MDE id, as in the documented examples;
- Graph's comments are the MDE API's comments of the same alert (one store behind both APIs);
- Graph's enumerations are the MDE API's values in camelCase (`InProgress` is `inProgress`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from joedefender_emulators.scenario import Machine

ODATA_PREFIX = "#microsoft.graph.security."
PORTAL = "https://security.microsoft.com"

# The MDE API's detectionSource and Graph's: the same sources, Graph's names
# (GD security-alert.md, detectionSource values; the pairs are ours, by their meaning).
DETECTION_SOURCES = {
    "windowsdefenderav": "antivirus",
    "windowsdefenderatp": "microsoftDefenderForEndpoint",
    "windowsdefendersmartscreen": "smartScreen",
    "customerti": "customTi",
    "automatedinvestigation": "automatedInvestigation",
    "customdetection": "customDetection",
    "threatexperts": "microsoftThreatExperts",
    "officeatp": "microsoftDefenderForOffice365",
    "mtp": "microsoft365Defender",
}


def camel(value: Any, *, none: str | None = "unknown") -> str | None:
    """`InProgress` as Graph writes it (`inProgress`); null as `none`."""
    if not isinstance(value, str) or not value:
        return none
    if value == "UnSpecified":
        return "unknown"
    return value[0].lower() + value[1:]


def pascal(value: str | None) -> str | None:
    """Graph's `truePositive` in the MDE API's vocabulary (`TruePositive`); `unknown` is null."""
    if value is None or value == "unknown":
        return None
    return value[0].upper() + value[1:]


def _common(kind: str, created: Any) -> dict[str, Any]:
    return {
        "@odata.type": ODATA_PREFIX + kind,
        "createdDateTime": created,
        "verdict": "unknown",
        "remediationStatus": "none",
        "remediationStatusDetails": None,
        "roles": [],
        "detailedRoles": [],
        "tags": [],
    }


def _file_details(item: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    name_key, path_key = (f"{prefix}FileName", f"{prefix}FilePath") if prefix else ("fileName", "filePath")
    return {
        "sha1": None if prefix else item.get("sha1"),
        "sha256": None if prefix else item.get("sha256"),
        "fileName": item.get(name_key),
        "filePath": item.get(path_key),
        "fileSize": None,
        "filePublisher": None,
        "signer": None,
        "issuer": None,
    }


def _file(item: Mapping[str, Any], device: str | None) -> dict[str, Any]:
    return {
        "detectionStatus": camel(item.get("detectionStatus"), none=None),
        "mdeDeviceId": device,
        "fileDetails": _file_details(item),
    }


def _process(item: Mapping[str, Any], device: str | None) -> dict[str, Any]:
    return {
        "processId": item.get("processId"),
        "parentProcessId": item.get("parentProcessId"),
        "processCommandLine": item.get("processCommandLine"),
        "processCreationDateTime": item.get("processCreationTime"),
        "parentProcessCreationDateTime": item.get("parentProcessCreationTime"),
        "detectionStatus": camel(item.get("detectionStatus"), none=None),
        "mdeDeviceId": device,
        "imageFile": _file_details(item),
        "parentProcessImageFile": _file_details(item, "parentProcess"),
        "userAccount": None,
    }


def _user(item: Mapping[str, Any], _: str | None) -> dict[str, Any]:
    return {
        "userAccount": {
            "accountName": item.get("accountName"),
            "domainName": item.get("domainName"),
            "userSid": item.get("userSid"),
            "azureAdUserId": item.get("aadUserId"),
            "userPrincipalName": item.get("userPrincipalName"),
            "displayName": None,
        }
    }


# The MDE API's entityType and the Graph evidence type carrying the same facts.
_EVIDENCE: dict[str, tuple[str, Callable[[Mapping[str, Any], str | None], dict[str, Any]]]] = {
    "file": ("fileEvidence", _file),
    "process": ("processEvidence", _process),
    "url": ("urlEvidence", lambda item, _: {"url": item.get("url")}),
    "ip": ("ipEvidence", lambda item, _: {"ipAddress": item.get("ipAddress")}),
    "user": ("userEvidence", _user),
    "registry": (
        "registryKeyEvidence",
        lambda item, _: {"registryKey": item.get("registryKey"), "registryHive": item.get("registryHive")},
    ),
}


def _device(alert: Mapping[str, Any], machine: Machine | None) -> dict[str, Any]:
    return {
        **_common("deviceEvidence", alert.get("alertCreationTime")),
        "mdeDeviceId": alert["machineId"],
        "azureAdDeviceId": None,
        "deviceDnsName": alert.get("computerDnsName") or (machine.computer_dns_name if machine else None),
        "osPlatform": machine.os_platform if machine else None,
        "osBuild": None,
        "version": None,
        "healthStatus": "active" if machine is not None else None,
        "onboardingStatus": "onboarded",
        "defenderAvStatus": "unknown",
        "rbacGroupId": None,
        "rbacGroupName": alert.get("rbacGroupName"),
        "loggedOnUsers": [],
        "vmMetadata": None,
    }


def evidence(alert: Mapping[str, Any], facet: Mapping[str, Any], machine: Machine | None) -> list[dict[str, Any]]:
    """The device first (as in the documented example), then each MDE evidence item in Graph's
    shape (types Graph has no counterpart for are left out), then the scenario's Graph-only ones."""
    device = alert.get("machineId")
    items: list[dict[str, Any]] = [_device(alert, machine)] if device else []
    for item in alert.get("evidence") or []:
        kind = _EVIDENCE.get(str(item.get("entityType") or "").lower())
        if kind is None:
            continue
        name, build = kind
        created = item.get("evidenceCreationTime") or alert.get("alertCreationTime")
        items.append({**_common(name, created), **build(item, device)})
    items.extend(dict(item) for item in facet.get("evidence") or [])
    return items


def comments(alert: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The MDE API's comments of the alert, as Graph's alertComment."""
    return [
        {
            "comment": c.get("comment"),
            "createdByDisplayName": c.get("createdBy"),
            "createdDateTime": c.get("createdTime"),
        }
        for c in alert.get("comments") or []
        if isinstance(c, dict)
    ]


def graph_alert(
    alert: Mapping[str, Any], facet: Mapping[str, Any], machine: Machine | None, tenant_id: str
) -> dict[str, Any]:
    """One alert as alerts_v2 serves it (evidence inline, as the documented list example shows)."""
    alert_id = alert["id"]
    incident = alert.get("incidentId")
    source = str(alert.get("detectionSource") or "")
    return {
        "@odata.type": ODATA_PREFIX + "alert",
        "id": alert_id,
        "providerAlertId": alert_id,
        "incidentId": None if incident is None else str(incident),
        "status": camel(alert.get("status")),
        "severity": camel(alert.get("severity")),
        "classification": camel(alert.get("classification")),
        "determination": camel(alert.get("determination")),
        "serviceSource": facet["serviceSource"],
        "detectionSource": facet.get("detectionSource") or DETECTION_SOURCES.get(source.lower(), "unknown"),
        "detectorId": alert.get("detectorId"),
        "tenantId": tenant_id,
        "title": alert.get("title"),
        "description": alert.get("description"),
        "recommendedActions": None,
        "category": alert.get("category"),
        "assignedTo": alert.get("assignedTo"),
        "alertWebUrl": f"{PORTAL}/alerts/{alert_id}?tid={tenant_id}",
        "incidentWebUrl": None if incident is None else f"{PORTAL}/incidents/{incident}?tid={tenant_id}",
        "actorDisplayName": None,
        "threatDisplayName": alert.get("threatName"),
        "threatFamilyName": alert.get("threatFamilyName"),
        "mitreTechniques": list(alert.get("mitreTechniques") or []),
        "createdDateTime": alert.get("alertCreationTime"),
        "lastUpdateDateTime": alert.get("lastUpdateTime"),
        "resolvedDateTime": alert.get("resolvedTime"),
        "firstActivityDateTime": alert.get("firstEventTime"),
        "lastActivityDateTime": alert.get("lastEventTime"),
        "comments": comments(alert),
        "evidence": evidence(alert, facet, machine),
        "systemTags": [],
    }
