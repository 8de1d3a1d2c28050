"""Every key the workflow builds and parses, in one place.

Work items are `<kind>:<subject>`; an (alert, sample) link is `<sample key>|<alert id>`; an
endpoint cleanup is `<machine id>|<job id>`; history subjects are `alert:<id>`,
`endpoint:<machine id>`, `incident:<id>` or a sample key (`sha256:<hex>`, `url:<digest>`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class WorkKind(StrEnum):
    TRIAGE = "triage"  # subject: an alert id
    SAMPLE = "sample"  # subject: a sample key
    COMMENT = "comment"  # subject: a sample key (all its links), or a link key
    CLEANUP = "cleanup"  # subject: a cleanup key
    CLASSIFY = "classify"  # subject: a link key
    INDICATORS = "indicators"  # subject: a sample key (choose its IOCs) or TENANT_BATCH (import)
    INCIDENT = "incident"  # subject: a Defender XDR incident id (its verdict tag and comments)


@dataclass(frozen=True, slots=True)
class WorkKey:
    kind: WorkKind
    subject: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.subject}"

    @classmethod
    def parse(cls, key: str) -> WorkKey | None:
        """None for a key of no known kind."""
        kind, _, subject = key.partition(":")
        try:
            return cls(WorkKind(kind), subject)
        except ValueError:
            return None


def triage_key(alert_id: str) -> str:
    return str(WorkKey(WorkKind.TRIAGE, alert_id))


def sample_work_key(sample_key: str) -> str:
    return str(WorkKey(WorkKind.SAMPLE, sample_key))


def comment_key(link: str) -> str:
    return str(WorkKey(WorkKind.COMMENT, link))


def classify_key(link: str) -> str:
    return str(WorkKey(WorkKind.CLASSIFY, link))


def cleanup_work_key(cleanup: str) -> str:
    return str(WorkKey(WorkKind.CLEANUP, cleanup))


TENANT_BATCH = "tenant"  # the one import batch of the tenant's ready indicator pushes


def indicators_work_key(subject: str) -> str:
    return str(WorkKey(WorkKind.INDICATORS, subject))


def incident_key(incident_id: str) -> str:
    return str(WorkKey(WorkKind.INCIDENT, incident_id))


def link_key(alert_id: str, sample_key: str) -> str:
    return f"{sample_key}|{alert_id}"


def link_prefix(sample_key: str) -> str:
    """The prefix every link of a sample starts with."""
    return f"{sample_key}|"


def cleanup_key(machine_id: str, job_id: str) -> str:
    return f"{machine_id}|{job_id}"


def alert_subject(alert_id: str) -> str:
    return f"alert:{alert_id}"


def endpoint_subject(machine_id: str) -> str:
    return f"endpoint:{machine_id}"


def incident_subject(incident_id: str) -> str:
    return f"incident:{incident_id}"
