"""Graph's alerts and incidents in the core's terms: the core speaks the MDE API's vocabulary, so
filters mean the same whichever the source (`WindowsDefenderAv` is Graph's `antivirus`, `New` its
`new`), and the collection plan (quarantine strategies for AV alerts) works unchanged.

- fileEvidence is a File item (its `fileDetails`); processEvidence a Process item carrying its
  image file and its `processCommandLine`, as the MDE adapter gives Process evidence (triage
  reads both the same way: `domain.process_evidence`); urlEvidence a Url item; each URL of an
  analyzedMessageEvidence (at most `MAX_MESSAGE_URLS`) a Url item. deviceEvidence gives the
  alert's machine (`mdeDeviceId`, the MDE machine id live response takes), not an item; every
  other type is an item of its own kind, which triage records as not analysed.
- Each item keeps its own `mdeDeviceId`: Graph may name several devices in one alert.

The pairs of detection source names are ours, by their meaning (the docs map neither to the other).
"""

from __future__ import annotations

from joedefender.adapters.graph.models import Alert as GraphAlert
from joedefender.adapters.graph.models import Evidence as GraphEvidence
from joedefender.adapters.graph.models import FileDetails
from joedefender.adapters.graph.models import Incident as GraphIncident
from joedefender.domain.alerts import Alert, Evidence
from joedefender.domain.incidents import Incident

MAX_MESSAGE_URLS = 20  # an email's URLs become samples: a message with thousands must not flood

DETECTION_SOURCES = {
    "antivirus": "WindowsDefenderAv",
    "microsoftdefenderforendpoint": "WindowsDefenderAtp",
    "smartscreen": "WindowsDefenderSmartScreen",
    "customti": "CustomerTI",
    "automatedinvestigation": "AutomatedInvestigation",
    "customdetection": "CustomDetection",
    "microsoftthreatexperts": "ThreatExperts",
    "microsoftdefenderforoffice365": "OfficeATP",
    "microsoft365defender": "MTP",
}
_SEVERITIES = {"unknown": "UnSpecified"}


def pascal(value: str | None) -> str | None:
    """Graph's `inProgress` as the MDE API writes it (`InProgress`); `unknown` is no value."""
    if not value or value == "unknown":
        return None
    return value[0].upper() + value[1:]


def camel(value: str) -> str:
    """The MDE API's `TruePositive` as Graph writes it (`truePositive`)."""
    return value[:1].lower() + value[1:]


def to_alert(alert: GraphAlert) -> Alert:
    devices = [e.mde_device_id for e in alert.evidence if e.kind == "deviceEvidence" and e.mde_device_id]
    items = [item for e in alert.evidence for item in to_evidence(e)]
    machine = devices[0] if devices else next((i.machine_id for i in items if i.machine_id), None)
    source = alert.detection_source
    return Alert(
        id=alert.id,
        title=alert.title,
        severity=_SEVERITIES.get(alert.severity or "", pascal(alert.severity)),
        status=pascal(alert.status),
        detection_source=DETECTION_SOURCES.get((source or "").lower(), source),
        machine_id=machine,
        threat_name=alert.threat_display_name,
        last_update_time=alert.last_update_date_time,
        evidence=tuple(items),
        comments=tuple(c.comment or "" for c in alert.comments),
        classification=pascal(alert.classification),
        determination=pascal(alert.determination),
        incident_id=alert.incident_id,
    )


def _file(kind: str, details: FileDetails | None, evidence: GraphEvidence) -> Evidence:
    details = details or FileDetails()
    return Evidence(
        entity_type=kind,
        sha256=details.sha256,
        sha1=details.sha1,
        file_name=details.file_name,
        file_path=details.file_path,
        detection_status=pascal(evidence.detection_status),
        machine_id=evidence.mde_device_id,
        process_command_line=evidence.process_command_line if kind == "Process" else None,
    )


def to_evidence(evidence: GraphEvidence) -> list[Evidence]:
    kind = evidence.kind
    if kind == "fileEvidence":
        return [_file("File", evidence.file_details, evidence)]
    if kind == "processEvidence":
        return [_file("Process", evidence.image_file, evidence)]
    if kind == "urlEvidence":
        return [Evidence(entity_type="Url", url=evidence.url)]
    if kind == "analyzedMessageEvidence":
        return [Evidence(entity_type="Url", url=url) for url in evidence.urls[:MAX_MESSAGE_URLS]]
    if kind == "deviceEvidence":
        return []
    return [Evidence(entity_type=pascal(kind.removesuffix("Evidence")) or "Unknown", machine_id=evidence.mde_device_id)]


def to_incident(incident: GraphIncident) -> Incident:
    return Incident(
        id=incident.id,
        tags=tuple(incident.custom_tags),
        comments=tuple(c.comment or "" for c in incident.comments),
        status=incident.status,
    )
