"""A Defender XDR incident as the core sees it, the rules of our verdict tag on it, and the record
of what the connector writes on it.

The incident shows, at a glance, the worst verdict Joe Sandbox found among its samples: one tag
of ours, `JoeSandbox:<verdict>`, replaced as verdicts come in, never touching anyone else's tags.
Tags and comments came from Defender and from people: attacker-influenced text, only compared
and passed back, never parsed further. An incident id came from Defender too: one that is not a
plain id (`usable_incident_id`) is never used as a key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from joedefender.domain.jobs import LinkState
from joedefender.domain.verdicts import CONCLUSIVE_DETECTIONS, Detection, detection_rank

TAG_PREFIX = "JoeSandbox:"
# The MDE API's incidentId is a number, Graph's a string of digits (its examples): a plain id,
# bounded, with nothing a store key or a URL path would read as structure.
_INCIDENT_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    tags: tuple[str, ...] = ()
    comments: tuple[str, ...] = ()
    status: str | None = None


def verdict_tag(detection: Detection) -> str:
    """Our tag for a verdict, e.g. `JoeSandbox:malicious`."""
    return TAG_PREFIX + detection


def is_ours(tag: str) -> bool:
    """Whether a tag is one of ours (any verdict), compared without regard to case."""
    return tag[: len(TAG_PREFIX)].lower() == TAG_PREFIX.lower()


def with_verdict_tag(tags: Iterable[str], tag: str) -> tuple[str, ...]:
    """The incident's tags with every tag of ours replaced by `tag`, others' kept in their order."""
    return (*(t for t in tags if not is_ours(t)), tag)


def worst_detection(detections: Iterable[str]) -> Detection | None:
    """The worst conclusive verdict among `detections` (malicious over suspicious over clean);
    None when there is none (no verdict yet, or only `unknown`)."""
    seen = set(detections)  # once: `detections` may be an iterator
    conclusive = [d for d in CONCLUSIVE_DETECTIONS if d in seen]
    return max(conclusive, key=detection_rank, default=None)


def usable_incident_id(value: str | None) -> str | None:
    """The alert's incident id when it is a plain id; None when there is none or it is not one."""
    return value if value is not None and _INCIDENT_ID.fullmatch(value) else None


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class IncidentSample(_Record):
    """One sample of the incident: its comment on the incident, as alert links have theirs."""

    state: LinkState = LinkState.PENDING  # `writing`: the comment may be there; look before writing
    commented_at: float | None = None
    settles_at: float | None = None  # a write not answered may land until then: look only after


class IncidentVerdicts(_Record):
    """What the connector writes on one incident: a comment per sample, and the verdict tag.

    Triage adds the samples of the incident's alerts; the incident's work item does the rest.
    """

    incident_id: str
    samples: dict[str, IncidentSample] = {}  # by sample key
    tagged: Detection | None = None  # the verdict our tag on the incident names, as last written
    tag_settles_at: float | None = None  # a tag write not answered may land until then
