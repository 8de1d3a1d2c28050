"""A Defender XDR incident as the core sees it, and the rules of our verdict tag on it.

The incident shows, at a glance, the worst verdict Joe Sandbox found among its samples: one tag
of ours, `JoeSandbox:<verdict>`, replaced as verdicts come in, never touching anyone else's tags.
Tags and comments came from Defender and from people: attacker-influenced text, only compared
and passed back, never parsed further.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from joedefender.domain.verdicts import CONCLUSIVE_DETECTIONS, Detection, detection_rank

TAG_PREFIX = "JoeSandbox:"


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
    conclusive = [d for d in CONCLUSIVE_DETECTIONS if d in set(detections)]
    return max(conclusive, key=detection_rank, default=None)
