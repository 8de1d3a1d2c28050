"""Which alerts the connector works on, and which of their evidence it can analyse."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from joedefender.domain.alerts import Alert, Evidence
from joedefender.domain.reasons import Cause, Reason
from joedefender.domain.samples import InvalidSampleError, SampleKey, validated_url


@dataclass(frozen=True)
class AlertFilters:
    """Filters matched without regard to case; an empty set lets everything through."""

    detection_sources: frozenset[str] = frozenset({"windowsdefenderav", "windowsdefenderatp"})
    severities: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset({"new", "inprogress"})
    title_contains: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        detection_sources: Iterable[str],
        severities: Iterable[str],
        statuses: Iterable[str],
        title_contains: Iterable[str] = (),
    ) -> AlertFilters:
        return cls(
            frozenset(s.lower() for s in detection_sources),
            frozenset(s.lower() for s in severities),
            frozenset(s.lower() for s in statuses),
            tuple(t.lower() for t in title_contains if t),
        )

    def rejection(self, alert: Alert) -> Cause | None:
        """Why the alert is not worked on, by its source, severity and status; None when it passes."""
        for what, value, allowed in (
            ("detection source", alert.detection_source, self.detection_sources),
            ("severity", alert.severity, self.severities),
            ("status", alert.status, self.statuses),
        ):
            if allowed and (value or "").lower() not in allowed:
                return Cause(reason=Reason.FILTERED, detail=f"{what} {value!r}")
        return None


@dataclass(frozen=True)
class TriageDecision:
    alert_id: str
    cause: Cause | None  # why it is skipped; None when accepted
    files: tuple[tuple[SampleKey, Evidence], ...] = ()  # one per sha256, the hash normalised
    urls: tuple[tuple[SampleKey, str], ...] = ()  # with the URL as validated (what is submitted)
    skipped_evidence: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.cause is None

    @property
    def summary(self) -> str:
        return f"{len(self.files)} file(s), {len(self.urls)} URL(s)"


def triage(alert: Alert, filters: AlertFilters) -> TriageDecision:
    """Keep the alert if it passes the filters and carries file or URL evidence; say why if not."""
    rejection = filters.rejection(alert)
    if rejection is not None:
        return TriageDecision(alert.id, rejection)
    title = (alert.title or "").lower()
    if filters.title_contains and not any(t in title for t in filters.title_contains):
        return TriageDecision(alert.id, Cause(reason=Reason.TITLE_FILTERED))

    files: dict[SampleKey, Evidence] = {}
    urls: dict[SampleKey, str] = {}
    skipped: list[str] = []
    for index, item in enumerate(alert.evidence):
        kind = (item.entity_type or "").lower()
        try:
            if kind == "file":
                if not item.sha256:
                    skipped.append(f"evidence {index}: file {item.file_name!r} has no sha256")
                    continue
                key = SampleKey.for_file(item.sha256)
                files.setdefault(key, dataclasses.replace(item, sha256=key.value))
            elif kind == "url":
                if not item.url:
                    skipped.append(f"evidence {index}: URL evidence without a url")
                    continue
                urls.setdefault(SampleKey.for_url(item.url), validated_url(item.url))
            else:
                skipped.append(f"evidence {index}: {item.entity_type or 'unknown'} evidence is not analysed")
        except InvalidSampleError as exc:
            skipped.append(f"evidence {index}: {exc}")
    if not files and not urls:
        return TriageDecision(alert.id, Cause(reason=Reason.NO_EVIDENCE), skipped_evidence=tuple(skipped))
    return TriageDecision(alert.id, None, tuple(files.items()), tuple(urls.items()), tuple(skipped))
