"""Alerts as the scenario gives them, with the updates the API allows (status, assignment,
classification, comments)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from joedefender_emulators.http import ApiError
from joedefender_emulators.mde.common import check_properties, format_time, json_object, not_found, parse_time
from joedefender_emulators.mde.odata import Field, Kind, Page, fields
from joedefender_emulators.scenario import ScenarioError

ALERT_KEYS = (
    "id", "incidentId", "investigationId", "assignedTo", "severity", "status", "classification",
    "determination", "investigationState", "detectionSource", "detectorId", "category",
    "threatFamilyName", "threatName", "title", "description", "alertCreationTime", "firstEventTime",
    "lastEventTime", "lastUpdateTime", "resolvedTime", "machineId", "computerDnsName", "rbacGroupName",
    "aadTenantId", "mitreTechniques", "relatedUser", "comments", "evidence",
)  # fmt: skip
# docs silent on absent lists: they are served as [] (the API never shows them as null).
_LIST_KEYS = ("mitreTechniques", "comments", "evidence")
EVIDENCE_KEYS = (
    "entityType", "evidenceCreationTime", "sha1", "sha256", "fileName", "filePath", "processId",
    "processCommandLine", "processCreationTime", "parentProcessId", "parentProcessCreationTime",
    "parentProcessFileName", "parentProcessFilePath", "ipAddress", "url", "registryKey", "registryHive",
    "registryValueType", "registryValue", "accountName", "domainName", "userSid", "aadUserId",
    "userPrincipalName", "detectionStatus",
)  # fmt: skip

FILTERABLE: dict[str, Field] = {
    **fields(Kind.DATETIME, "alertCreationTime", "lastUpdateTime", "lastEventTime"),
    **fields(Kind.NUMBER, "incidentId", "investigationId"),
    **fields(Kind.STRING, "id", "assignedTo", "detectionSource", "status", "severity", "category"),
    "asssignedTo": Field("assignedTo", Kind.STRING),  # [sic] in get-alerts.md
}

UPDATABLE = ("status", "assignedTo", "classification", "determination", "comment")
STATUSES = ("New", "InProgress", "Resolved")
CLASSIFICATIONS = ("TruePositive", "InformationalExpectedActivity", "FalsePositive")
# The union of alerts.md and update-alert.md (the two pages disagree).
DETERMINATIONS = (
    "MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser", "Malware", "Phishing",
    "UnwantedSoftware", "Other", "SecurityTesting", "LineOfBusinessApplication", "ConfirmedUserActivity",
    "Clean", "InsufficientData", "ConfirmedActivity", "NotMalicious",
)  # fmt: skip


# The product whose alerts the MDE API serves; an alert of another (Graph's `serviceSource`) is
# only in Graph's alerts_v2.
MDE_SERVICE = "microsoftDefenderForEndpoint"


def _graph_facet(alert: dict[str, Any], position: int) -> dict[str, Any]:
    """Take the scenario's `graph:` mapping off the alert (the MDE API never shows it): what only
    Graph says of the alert (`serviceSource`, `detectionSource`, `suppressed`, extra `evidence`)."""
    facet = alert.pop("graph", None) or {}
    if not isinstance(facet, dict):
        raise ScenarioError(f"defender alert #{position + 1}: 'graph' must be a mapping")
    unknown = set(facet) - {"serviceSource", "detectionSource", "suppressed", "evidence"}
    if unknown:
        raise ScenarioError(f"defender alert #{position + 1}: unknown graph keys {', '.join(sorted(unknown))}")
    facet.setdefault("serviceSource", MDE_SERVICE)
    facet["evidence"] = [item for item in facet.get("evidence") or [] if isinstance(item, dict)]
    return facet


def _normalize(raw: Mapping[str, Any], position: int) -> dict[str, Any]:
    """Keep every field as given (unknown ones too); add missing documented keys as null."""
    if not isinstance(raw.get("id"), str) or not raw["id"]:
        raise ScenarioError(f"defender alert #{position + 1} has no string id")
    alert: dict[str, Any] = copy.deepcopy(dict(raw))
    alert.pop("graph", None)
    for key in ALERT_KEYS:
        alert.setdefault(key, None)
    for key in _LIST_KEYS:
        if not isinstance(alert[key], list):
            alert[key] = []
    alert["evidence"] = [
        {**{key: None for key in EVIDENCE_KEYS}, **item} for item in alert["evidence"] if isinstance(item, dict)
    ]
    return alert


def _sort_key(alert: Mapping[str, Any]) -> tuple[float, str]:
    moment = parse_time(alert.get("lastUpdateTime"))
    return (moment.timestamp() if moment else float("-inf"), str(alert["id"]))


def _choice(body: Mapping[str, Any], key: str, allowed: Sequence[str], nullable: bool) -> None:
    if key not in body:
        return
    value = body[key]
    if value is None and nullable:
        return
    if value not in allowed:
        raise ApiError(
            400, "InvalidRequestBody", f"Invalid value {str(value)[:50]!r} for '{key}'. Allowed: {', '.join(allowed)}."
        )


def validate_update(body: Mapping[str, Any], extra: Sequence[str] = ()) -> None:
    """docs silent on unknown properties: refused like wrong-case ones, so a typo cannot pass
    as a no-op update."""
    check_properties(body, (*UPDATABLE, *extra))
    _choice(body, "status", STATUSES, nullable=False)
    _choice(body, "classification", CLASSIFICATIONS, nullable=True)
    _choice(body, "determination", DETERMINATIONS, nullable=True)
    for key in ("assignedTo", "comment"):
        if key in body and body[key] is not None and not isinstance(body[key], str):
            raise ApiError(400, "InvalidRequestBody", f"'{key}' must be a string.")


# The timestamps of an alert, its comments and its evidence that a shift moves.
_ALERT_TIMES = ("alertCreationTime", "firstEventTime", "lastEventTime", "lastUpdateTime", "resolvedTime")
_EVIDENCE_TIMES = ("evidenceCreationTime", "processCreationTime", "parentProcessCreationTime")


def shift_times(alerts: Sequence[dict[str, Any]], newest: datetime) -> None:
    """Move every timestamp by the same amount so the newest `lastUpdateTime` is `newest`: a
    scenario written on one day plays as if its alerts had just come in (the gaps are kept)."""
    latest = [moment for moment in (parse_time(a.get("lastUpdateTime")) for a in alerts) if moment is not None]
    if not latest:
        return
    delta = newest - max(latest)

    def move(item: dict[str, Any], keys: Sequence[str]) -> None:
        for key in keys:
            moment = parse_time(item.get(key))
            if moment is not None:
                item[key] = format_time(moment + delta)

    for alert in alerts:
        move(alert, _ALERT_TIMES)
        for comment in alert["comments"]:
            if isinstance(comment, dict):
                move(comment, ("createdTime",))
        for item in alert["evidence"]:
            move(item, _EVIDENCE_TIMES)


class AlertStore:
    def __init__(self, raw_alerts: Sequence[Mapping[str, Any]], newest: datetime | None = None) -> None:
        """`newest`: shift the scenario's times so the newest alert was updated then (None: as given)."""
        self._alerts: dict[str, dict[str, Any]] = {}
        # by alert id: what Graph alone says of the alert (see _graph_facet)
        self.graph: dict[str, dict[str, Any]] = {}
        for position, raw in enumerate(raw_alerts):
            alert = _normalize(raw, position)
            if alert["id"] in self._alerts:
                raise ScenarioError(f"defender alert id {alert['id']!r} appears twice")
            self._alerts[alert["id"]] = alert
            self.graph[alert["id"]] = _graph_facet(copy.deepcopy(dict(raw)), position)
        if newest is not None:
            shift_times(list(self._alerts.values()), newest)

    def _in_mde(self, alert_id: str) -> bool:
        return bool(self.graph[alert_id]["serviceSource"] == MDE_SERVICE)

    def _ordered(self) -> list[dict[str, Any]]:
        return sorted((a for a in self._alerts.values() if self._in_mde(a["id"])), key=_sort_key)

    def all(self) -> list[dict[str, Any]]:
        """Every alert, whichever product raised it (for inspection)."""
        return copy.deepcopy(sorted(self._alerts.values(), key=_sort_key))

    def stored(self) -> list[dict[str, Any]]:
        """Every alert as stored (not a copy): the Graph emulator's view of the same tenant, under
        the tenant's lock."""
        return list(self._alerts.values())

    def record(self, alert_id: str) -> dict[str, Any] | None:
        """One alert as stored, whichever product raised it (None: no such alert)."""
        return self._alerts.get(alert_id)

    def select(self, page: Page) -> list[dict[str, Any]]:
        expand = "evidence" in page.expand
        return [
            copy.deepcopy(dict(alert)) if expand else {**copy.deepcopy(dict(alert)), "evidence": []}
            for alert in page.apply(self._ordered())
        ]

    def get(self, alert_id: str) -> dict[str, Any]:
        return copy.deepcopy(self._find(alert_id))

    def _find(self, alert_id: str) -> dict[str, Any]:
        alert = self._alerts.get(alert_id)
        if alert is None or not self._in_mde(alert_id):
            raise not_found(f"Alert {alert_id[:100]}")
        return alert

    def change(self, alert_id: str, changes: Mapping[str, Any], author: str, now: datetime) -> None:
        """The Graph emulator's write to the same alert (status, classification, determination,
        assignedTo, comment, in the MDE API's own vocabulary), unchecked: Graph checked it."""
        _apply(self._alerts[alert_id], changes, author, now)

    def add_evidence(self, alert_id: str, items: Any, now: datetime) -> dict[str, Any]:
        """What Defender does as an investigation goes on: more evidence, a newer lastUpdateTime."""
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ApiError(400, "InvalidRequestBody", "Expected a JSON array of evidence objects.")
        alert = self._find(alert_id)
        alert["evidence"].extend(copy.deepcopy(items))
        alert["lastUpdateTime"] = format_time(now)
        return copy.deepcopy(alert)

    def update(self, alert_id: str, body: Any, author: str, now: datetime) -> dict[str, Any]:
        body = json_object(body)
        validate_update(body)
        alert = self._find(alert_id)
        _apply(alert, body, author, now)
        return copy.deepcopy(alert)

    def batch_update(self, body: Any, author: str, now: datetime) -> None:
        body = json_object(body)
        validate_update(body, extra=("alertIds",))
        ids = body.get("alertIds")
        if ids is None:
            raise ApiError(400, "MissingRequiredParameter", "Missing required parameter: alertIds.")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ApiError(400, "InvalidRequestBody", "'alertIds' must be a non-empty list of alert ids.")
        missing = [i for i in ids if i not in self._alerts or not self._in_mde(i)]
        if missing:
            # docs silent: all or nothing, and the unknown ids are named.
            raise not_found(f"Alert(s) {', '.join(m[:100] for m in missing[:10])}")
        changes = {k: v for k, v in body.items() if k != "alertIds"}
        for alert_id in ids:
            _apply(self._alerts[alert_id], changes, author, now)


def _apply(alert: dict[str, Any], body: Mapping[str, Any], author: str, now: datetime) -> None:
    stamp = format_time(now)
    changed = False
    for key in ("status", "assignedTo", "classification", "determination"):
        if key in body and alert.get(key) != body[key]:
            alert[key] = body[key]
            changed = True
            if key == "status":
                alert["resolvedTime"] = stamp if body[key] == "Resolved" else None
    comment = body.get("comment")
    if isinstance(comment, str) and comment:
        # docs silent on the author an app is shown as: its application (client) id.
        alert["comments"].append({"comment": comment, "createdBy": author, "createdTime": stamp})
        changed = True
    if changed:
        alert["lastUpdateTime"] = stamp
