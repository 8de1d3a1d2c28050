"""Which alerts the connector works on, and which of their evidence it can analyse."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from joedefender.domain.samples import FileEvidence, InvalidSampleError, UrlEvidence, normalise_sha256


class EvidenceLike(Protocol):
    """The evidence fields triage reads (Defender's Evidence model has them)."""

    @property
    def entity_type(self) -> str | None: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def sha1(self) -> str | None: ...
    @property
    def file_name(self) -> str | None: ...
    @property
    def file_path(self) -> str | None: ...
    @property
    def url(self) -> str | None: ...
    @property
    def detection_status(self) -> str | None: ...


class AlertLike(Protocol):
    """The alert fields triage reads (Defender's Alert model has them)."""

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str | None: ...
    @property
    def severity(self) -> str | None: ...
    @property
    def status(self) -> str | None: ...
    @property
    def detection_source(self) -> str | None: ...
    @property
    def machine_id(self) -> str | None: ...
    @property
    def threat_name(self) -> str | None: ...
    @property
    def evidence(self) -> Sequence[EvidenceLike]: ...


NO_EVIDENCE = "no file (sha256) or URL evidence"


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

    def rejection(self, detection_source: str | None, severity: str | None, status: str | None) -> str | None:
        """Why an alert with these values is not worked on, or None when it passes."""
        for what, value, allowed in (
            ("detection source", detection_source, self.detection_sources),
            ("severity", severity, self.severities),
            ("status", status, self.statuses),
        ):
            if allowed and (value or "").lower() not in allowed:
                return f"{what} {value!r} is not in the configured filter"
        return None


@dataclass(frozen=True)
class TriageDecision:
    alert_id: str
    accepted: bool
    reason: str
    files: tuple[FileEvidence, ...] = ()
    urls: tuple[UrlEvidence, ...] = ()
    skipped_evidence: tuple[str, ...] = field(default=())


def triage(alert: AlertLike, filters: AlertFilters) -> TriageDecision:
    """Keep the alert if it passes the filters and carries file or URL evidence; say why if not."""
    rejection = filters.rejection(alert.detection_source, alert.severity, alert.status)
    if rejection is not None:
        return TriageDecision(alert.id, False, rejection)
    title = (alert.title or "").lower()
    if filters.title_contains and not any(t in title for t in filters.title_contains):
        return TriageDecision(alert.id, False, "title matches none of DefenderAlertTitleFilter")

    files: dict[str, FileEvidence] = {}
    urls: dict[str, UrlEvidence] = {}
    skipped: list[str] = []
    for index, item in enumerate(alert.evidence):
        kind = (item.entity_type or "").lower()
        if kind == "file":
            if not item.sha256:
                skipped.append(f"evidence {index}: file {item.file_name!r} has no sha256")
                continue
            try:
                sha256 = normalise_sha256(item.sha256)
            except InvalidSampleError as exc:
                skipped.append(f"evidence {index}: {exc}")
                continue
            files.setdefault(
                sha256,
                FileEvidence(
                    alert_id=alert.id,
                    machine_id=alert.machine_id,
                    sha256=sha256,
                    sha1=item.sha1,
                    file_name=item.file_name,
                    directory=item.file_path,
                    detection_source=alert.detection_source or "",
                    detection_status=item.detection_status,
                    threat_name=alert.threat_name,
                ),
            )
        elif kind == "url":
            if not item.url:
                skipped.append(f"evidence {index}: URL evidence without a url")
                continue
            try:
                evidence = UrlEvidence(alert.id, alert.machine_id, item.url)
                urls.setdefault(evidence.key.id, evidence)
            except InvalidSampleError as exc:
                skipped.append(f"evidence {index}: {exc}")
        else:
            skipped.append(f"evidence {index}: {item.entity_type or 'unknown'} evidence is not analysed")
    if not files and not urls:
        return TriageDecision(alert.id, False, "no file (sha256) or URL evidence", skipped_evidence=tuple(skipped))
    reason = f"{len(files)} file(s), {len(urls)} URL(s)"
    return TriageDecision(alert.id, True, reason, tuple(files.values()), tuple(urls.values()), tuple(skipped))
