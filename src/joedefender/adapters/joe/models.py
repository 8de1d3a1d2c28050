"""The Joe client's own wire models; verdicts and IOCs are the core's (`joedefender.domain.verdicts`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from joedefender.domain.verdicts import Detection


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AnalysisRef(_Frozen):
    """One analysis of a submission as `submission/info` lists it (fields unset while running)."""

    webid: str
    status: str = ""
    detection: Detection | None = None
    score: int | None = None


class SubmissionStatus(_Frozen):
    """Where a submission stands, with its analyses; `webid` is the most relevant one once finished.

    The port maps it to the core's `joedefender.domain.verdicts.SubmissionStatus`.
    """

    submission_id: str
    status: str
    name: str | None = None
    webid: str | None = None
    analyses: tuple[AnalysisRef, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status == "finished"


class JoeAccount(_Frozen):
    """The account's plan and what is left of its submission quota (None: not reported)."""

    type: str
    daily_limit: int | None = None
    daily_remaining: int | None = None
    monthly_limit: int | None = None
    monthly_remaining: int | None = None
