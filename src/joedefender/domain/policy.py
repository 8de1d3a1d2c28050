"""When a sample Joe already knows is analysed again, and which known verdict is reused."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from joedefender.domain.verdicts import Verdict


@dataclass(frozen=True)
class Reuse:
    """A known verdict to comment instead of analysing again; `older_more_severe` is an analysis
    older than the policy's age that found more than `verdict` did (the analyst should know)."""

    verdict: Verdict
    older_more_severe: Verdict | None = None


@dataclass(frozen=True)
class ResubmitPolicy:
    """never: reuse the most severe known verdict; always: analyse again (JoeAz's default);
    older_than: analyse again when the newest analysis is older than `max_age`, else reuse the
    most severe of the analyses younger than `max_age`."""

    mode: Literal["never", "always", "older_than"]
    max_age: timedelta | None = None

    @classmethod
    def of(cls, resubmit: bool, resubmit_after_days: int | None) -> ResubmitPolicy:
        if resubmit_after_days is not None:
            return cls("older_than", timedelta(days=resubmit_after_days))
        return cls("always" if resubmit else "never")

    def decide(self, known: Sequence[Verdict], now: datetime) -> Reuse | None:
        """What to reuse of Joe's known analyses of a sample; None: analyse it again."""
        if not known or self.mode == "always":
            return None
        if self.mode == "never":
            return Reuse(max(known, key=lambda v: v.severity))
        assert self.max_age is not None
        young = [v for v in known if v.time is not None and now - v.time <= self.max_age]
        if not young:  # the newest analysis is older than max_age (or none is dated)
            return None
        chosen = max(young, key=lambda v: v.severity)
        older = [v for v in known if v not in young and v.severity[:2] > chosen.severity[:2]]
        return Reuse(chosen, max(older, key=lambda v: v.severity) if older else None)

    def describe(self) -> str:
        if self.mode == "older_than":
            assert self.max_age is not None
            return f"resubmit when the newest analysis is older than {self.max_age.days} days"
        return f"{self.mode} resubmit"
