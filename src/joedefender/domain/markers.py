"""The one way the connector marks what it leaves in other systems, so it can find it again.

A marker is `joedefender ref <id>`: the last line of an alert comment (the id is the sample key),
the start of a live response action's comment (the attempt's nonce), the comment of a Joe
Sandbox submission (the submission's nonce). After a crash, or an answer lost on the way back,
the connector looks for its marker before doing the same thing twice. An id is a sample key or a
nonce from `new_nonce`, never a value from Defender or Joe, so no attacker-sourced text can
forge one; a marker is recognised as a whole word (`carries`) or, on an alert comment, as the
whole last line (`joedefender.domain.comments.has_marker`).
"""

from __future__ import annotations

import re
import uuid

PREFIX = "joedefender ref "


def mark(ref: str) -> str:
    """The marker naming `ref` (a sample key or a nonce)."""
    return f"{PREFIX}{ref}"


def new_nonce() -> str:
    """A short random id for an intent (an attempt, a submission) that its effect will carry."""
    return uuid.uuid4().hex[:16]


def carries(text: str | None, ref: str) -> bool:
    """Whether `text` holds the marker of `ref` as a whole word (`ref` followed by no more id)."""
    return re.search(rf"{re.escape(mark(ref))}(?![\w-])", text or "") is not None
