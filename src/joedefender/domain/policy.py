"""When a sample Joe already knows is analysed again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal


@dataclass(frozen=True)
class ResubmitPolicy:
    """never: reuse any known verdict; always: analyse again (JoeAz's default); older_than: reuse
    verdicts younger than `max_age`."""

    mode: Literal["never", "always", "older_than"]
    max_age: timedelta | None = None

    @classmethod
    def of(cls, resubmit: bool, resubmit_after_days: int | None) -> ResubmitPolicy:
        if resubmit_after_days is not None:
            return cls("older_than", timedelta(days=resubmit_after_days))
        return cls("always" if resubmit else "never")

    def resubmit(self, analysed_at: datetime | None, now: datetime) -> bool:
        if self.mode == "always":
            return True
        if self.mode == "never":
            return False
        assert self.max_age is not None
        return analysed_at is None or now - analysed_at > self.max_age

    def describe(self) -> str:
        if self.mode == "older_than":
            assert self.max_age is not None
            return f"resubmit when the newest analysis is older than {self.max_age.days} days"
        return f"{self.mode} resubmit"
