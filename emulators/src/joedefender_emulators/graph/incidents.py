"""Incidents as Graph `security/incidents` holds them (GD `resources/security-incident.md`,
`api/security-incident-update.md`, `api/security-incident-post-comments.md`): the scenario's, and
one for every `incidentId` an alert names.

docs silent on whether a PATCH of `customTags` replaces the list or adds to it: the emulator
replaces it (the harder case: a client that sends only its own tag wipes everyone else's), and the
README lists it under "to confirm on a real tenant". No ETag is documented for incidents, so a
read-modify-write can lose a tag an analyst adds in between; nothing here hides that.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from joedefender_emulators.graph.common import bad_request, not_found
from joedefender_emulators.graph.views import ODATA_PREFIX, PORTAL
from joedefender_emulators.mde.common import format_time
from joedefender_emulators.scenario import GraphIncident

UPDATABLE = ("assignedTo", "classification", "determination", "status", "customTags")
STATUSES = ("active", "resolved", "redirected")
CLASSIFICATIONS = ("unknown", "falsePositive", "truePositive", "informationalExpectedActivity")
DETERMINATIONS = (
    "unknown", "apt", "malware", "securityPersonnel", "securityTesting", "unwantedSoftware", "other",
    "multiStagedAttack", "compromisedUser", "phishing", "maliciousUserActivity", "notMalicious",
    "notEnoughDataToValidate", "confirmedUserActivity", "lineOfBusinessApplication",
)  # fmt: skip
# docs silent on limits; ours, so that a runaway client is refused rather than stored without end
MAX_TAGS = 100
MAX_TAG = 256
MAX_COMMENT = 30_000


def check_comment(body: Any) -> str:
    """An alertComment body (`@odata.type` optional, `comment` a non-empty string, nothing else)."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    unknown = set(body) - {"@odata.type", "comment"}
    if unknown:
        raise bad_request(f"Invalid property '{sorted(unknown)[0][:60]}' for microsoft.graph.security.alertComment.")
    kind = body.get("@odata.type", "microsoft.graph.security.alertComment")
    if str(kind).lstrip("#") != "microsoft.graph.security.alertComment":
        raise bad_request(f"'@odata.type' must be microsoft.graph.security.alertComment, not '{str(kind)[:60]}'.")
    comment = body.get("comment")
    if not isinstance(comment, str) or not comment.strip():
        raise bad_request("'comment' must be a non-empty string.")
    if len(comment) > MAX_COMMENT:
        raise bad_request(f"'comment' is longer than {MAX_COMMENT} characters.")
    return comment


def check_choice(body: Mapping[str, Any], key: str, allowed: Sequence[str]) -> None:
    if key in body and body[key] not in allowed:
        raise bad_request(f"Invalid value '{str(body[key])[:50]}' for '{key}'. Allowed: {', '.join(allowed)}.")


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) and 0 < len(t) <= MAX_TAG for t in value):
        raise bad_request(f"'customTags' must be a list of strings of 1 to {MAX_TAG} characters.")
    if len(value) > MAX_TAGS:
        raise bad_request(f"'customTags' holds more than {MAX_TAGS} tags.")
    return list(value)


class IncidentStore:
    def __init__(
        self, incidents: Iterable[GraphIncident], alerts: Iterable[Mapping[str, Any]], tenant_id: str, now: datetime
    ) -> None:
        self._tenant_id = tenant_id
        self._incidents: dict[str, dict[str, Any]] = {}
        stamp = format_time(now)
        for given in incidents:
            self._incidents[given.id] = {
                "id": given.id,
                "displayName": given.display_name or f"Incident {given.id}",
                "createdDateTime": stamp,
                "lastUpdateDateTime": stamp,
                "assignedTo": given.assigned_to,
                "classification": "unknown",
                "determination": "unknown",
                "status": given.status,
                "severity": given.severity,
                "customTags": list(given.custom_tags),
                "comments": copy.deepcopy(given.comments),
            }
        for alert in alerts:
            incident = alert.get("incidentId")
            if incident is not None and str(incident) not in self._incidents:
                self._incidents[str(incident)] = {
                    "id": str(incident),
                    "displayName": str(alert.get("title") or f"Incident {incident}"),
                    "createdDateTime": alert.get("alertCreationTime") or stamp,
                    "lastUpdateDateTime": alert.get("lastUpdateTime") or stamp,
                    "assignedTo": None,
                    "classification": "unknown",
                    "determination": "unknown",
                    "status": "active",
                    "severity": str(alert.get("severity") or "unknown").lower(),
                    "customTags": [],
                    "comments": [],
                }

    def ids(self) -> list[str]:
        return sorted(self._incidents)

    def get(self, incident_id: str) -> dict[str, Any]:
        incident = self._find(incident_id)
        return {
            "@odata.type": ODATA_PREFIX + "incident",
            "incidentWebUrl": f"{PORTAL}/incidents/{incident['id']}?tid={self._tenant_id}",
            "redirectIncidentId": None,
            "tenantId": self._tenant_id,
            "systemTags": [],
            "description": None,
            **copy.deepcopy(incident),
        }

    def _find(self, incident_id: str) -> dict[str, Any]:
        incident = self._incidents.get(incident_id)
        if incident is None:
            raise not_found(f"Incident {incident_id[:100]}")
        return incident

    def update(self, incident_id: str, body: Any, now: datetime) -> dict[str, Any]:
        incident = self._find(incident_id)
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        unknown = set(body) - set(UPDATABLE) - {"@odata.type"}
        if unknown:
            raise bad_request(f"Invalid property '{sorted(unknown)[0][:60]}' for an incident update.")
        check_choice(body, "status", STATUSES)
        check_choice(body, "classification", CLASSIFICATIONS)
        check_choice(body, "determination", DETERMINATIONS)
        if "assignedTo" in body and body["assignedTo"] is not None and not isinstance(body["assignedTo"], str):
            raise bad_request("'assignedTo' must be a string or null.")
        changes = {key: body[key] for key in UPDATABLE if key in body}
        if "customTags" in changes:
            changes["customTags"] = _tags(changes["customTags"])
        incident.update(changes)  # customTags: the list given replaces the one there (see above)
        incident["lastUpdateDateTime"] = format_time(now)
        return self.get(incident_id)

    def add_comment(self, incident_id: str, body: Any, author: str, now: datetime) -> list[dict[str, Any]]:
        incident = self._find(incident_id)
        text = check_comment(body)
        stamp = format_time(now)
        incident["comments"].append({"comment": text, "createdByDisplayName": author, "createdDateTime": stamp})
        incident["lastUpdateDateTime"] = stamp
        return copy.deepcopy(incident["comments"])

    def all(self) -> list[dict[str, Any]]:
        return [self.get(incident_id) for incident_id in self.ids()]
