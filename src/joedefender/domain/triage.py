"""Which alerts the connector works on, and which of their evidence it can analyse."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from joedefender.domain.alerts import Alert, Evidence
from joedefender.domain.process_evidence import (
    ProcessPolicy,
    command_line_targets,
    image_path,
    is_process,
    names,
    os_binary,
)
from joedefender.domain.proxy_targets import Target, TargetReason
from joedefender.domain.reasons import Cause, Reason
from joedefender.domain.samples import InvalidSampleError, SampleKey, validated_url
from joedefender.domain.text import shown
from joedefender.domain.windows_paths import ascii_upper


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
    # Files a proxy binary's command line ran, known by (machine, path) until collected and hashed.
    targets: tuple[Target, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.cause is None

    @property
    def summary(self) -> str:
        summary = f"{len(self.files)} file(s), {len(self.urls)} URL(s)"
        return summary + (f", {len(self.targets)} command-line target(s)" if self.targets else "")


MAX_NOTES = 20  # history lines about skipped evidence per triage; the rest are counted in one
_SHOWN = 300  # characters of one attacker-sourced value in a note


def triage(alert: Alert, filters: AlertFilters, process: ProcessPolicy | None = None) -> TriageDecision:
    """Keep the alert if it passes the filters and carries something to analyse (file, process
    image, command-line target or URL evidence); say why if not."""
    rejection = filters.rejection(alert)
    if rejection is not None:
        return TriageDecision(alert.id, rejection)
    title = (alert.title or "").lower()
    if filters.title_contains and not any(t in title for t in filters.title_contains):
        return TriageDecision(alert.id, Cause(reason=Reason.TITLE_FILTERED))
    return _Evidence(process or ProcessPolicy()).read(alert)


class _Evidence:
    """One alert's evidence sorted into samples, and notes on what is not one."""

    def __init__(self, policy: ProcessPolicy) -> None:
        self._policy = policy
        self.files: dict[SampleKey, Evidence] = {}
        self.urls: dict[SampleKey, str] = {}
        self.notes: list[str] = []
        self.os_files: list[str] = []  # operating-system files skipped, for the cause

    def read(self, alert: Alert) -> TriageDecision:
        for index, item in enumerate(alert.evidence):
            try:
                self._item(index, item)
            except InvalidSampleError as exc:
                self.notes.append(f"evidence {index}: {exc}")
        targets = self._targets(alert)
        notes = tuple(self.notes[:MAX_NOTES])
        if len(self.notes) > MAX_NOTES:
            notes += (f"{len(self.notes) - MAX_NOTES} more evidence item(s) not analysed",)
        if not self.files and not self.urls and not targets:
            detail = f"; only operating-system files: {names(self.os_files)}" if self.os_files else ""
            return TriageDecision(alert.id, Cause(reason=Reason.NO_EVIDENCE, detail=detail), skipped_evidence=notes)
        return TriageDecision(alert.id, None, tuple(self.files.items()), tuple(self.urls.items()), notes, targets)

    def _item(self, index: int, item: Evidence) -> None:
        kind = (item.entity_type or "").lower()
        if kind == "file":
            if not item.sha256:
                self.notes.append(f"evidence {index}: file {shown(item.file_name, _SHOWN)!r} has no sha256")
                return
            self._file(item, item.sha256)
        elif is_process(item):
            self._image(index, item)
        elif kind == "url":
            if not item.url:
                self.notes.append(f"evidence {index}: URL evidence without a url")
                return
            self.urls.setdefault(SampleKey.for_url(item.url), validated_url(item.url))
        else:
            self.notes.append(f"evidence {index}: {item.entity_type or 'unknown'} evidence is not analysed")

    def _file(self, item: Evidence, sha256: str) -> None:
        key = SampleKey.for_file(sha256)
        self.files.setdefault(key, dataclasses.replace(item, sha256=key.value))

    def _image(self, index: int, item: Evidence) -> None:
        """The process's image is a sample, unless the settings say no or it is the system's own."""
        where = shown(image_path(item) or item.file_name or "(unnamed)", _SHOWN)
        if not self._policy.images:
            self.notes.append(f"evidence {index}: process image {where} not analysed (AnalyseProcessImages is off)")
            return
        rule = os_binary(item, self._policy.os_rules)
        if rule is not None:
            self.os_files.append(where)
            self.notes.append(f"evidence {index}: process image {where} is an operating-system file ({rule.text})")
        elif not item.sha256:
            self.notes.append(f"evidence {index}: process image {where} has no sha256")
        else:
            self._file(item, item.sha256)

    def _targets(self, alert: Alert) -> tuple[Target, ...]:
        found = command_line_targets(alert, self._policy)
        for skip in found.skipped:
            if skip.reason is TargetReason.OS_BINARY:
                self.os_files.append(shown(skip.detail, _SHOWN))
            self.notes.append(f"command line: {skip.text}")
        # A file the alert gives as evidence with its hash is that sample already: no need to fetch it.
        hashed = {_where(item.machine_id or alert.machine_id, item.path) for item in self.files.values()}
        targets = []
        for target in found.found:
            path = shown(target.path, _SHOWN)
            if target.machine_id is None:
                self.notes.append(f"command line: {path}: no machine is named to collect it from")
            elif _where(target.machine_id, target.path) in hashed:
                self.notes.append(f"command line: {path} is evidence of the alert already, with its sha256")
            else:
                targets.append(target)
        return tuple(targets)


def _where(machine_id: str | None, path: str | None) -> tuple[str, str]:
    return (machine_id or "").lower(), ascii_upper(path or "")
