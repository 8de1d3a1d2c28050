"""Verdict actions as pure rules: which IOCs of an analysis become Defender indicators, and how.

Everything here is data from the attacker's side (Joe's IOC report, Defender's alert), so values
are validated and canonicalised before they are proposed (`joedefender.domain.indicator_values`:
nothing private, internal, shared or allow-listed), and texts are made safe and bounded
(`joedefender.domain.text.shown`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from joedefender.domain.indicator_values import AllowList, IndicatorType, Skip, check_value
from joedefender.domain.text import shown
from joedefender.domain.verdicts import Detection, IocSet, Verdict

APPLICATION = "joedefender"
TITLE_PREFIX = "joedefender:"

IndicatorAction = Literal["Audit", "Warn", "Block", "BlockAndRemediate"]
Severity = Literal["Informational", "Low", "Medium", "High"]
Family = Literal["file", "network"]

ACTIONS: tuple[IndicatorAction, ...] = ("Audit", "Warn", "Block", "BlockAndRemediate")
SEVERITIES: tuple[Severity, ...] = ("Informational", "Low", "Medium", "High")
FILE_ONLY_ACTIONS = frozenset({"BlockAndRemediate"})
_EXAMPLES = 3  # refused values named per reason in the sample's history
_EXAMPLE_CHARS = 80


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Indicator(_Frozen):
    """One indicator as the connector submits it (the adapter maps it to Defender's wire model)."""

    value: str
    type: IndicatorType
    action: IndicatorAction
    severity: Severity
    title: str
    description: str
    expires_at: datetime
    generate_alert: bool
    rbac_group_names: tuple[str, ...] = ()
    application: str = APPLICATION


class ImportResult(_Frozen):
    """Defender's answer for one submitted indicator."""

    value: str
    id: str | None = None
    failed: bool = False
    reason: str | None = None


class ExistingIndicator(_Frozen):
    """An active indicator Defender holds, as a targeted lookup or a listing returns it."""

    id: str
    value: str
    type: str
    application: str | None = None
    title: str | None = None
    action: str | None = None
    expires_at: datetime | None = None

    @property
    def ours(self) -> bool:
        """Created by this connector: only those are updated, listed and withdrawn."""
        return self.application == APPLICATION or (self.title or "").startswith(TITLE_PREFIX)


@dataclass(frozen=True)
class Proposal:
    """What one analysis proposes: the (type, value) pairs to push, and for every value left out
    the reason, counted, with the first few values refused for it (shown safely)."""

    entries: tuple[tuple[IndicatorType, str], ...]
    skipped: Mapping[str, int] = field(default_factory=dict)
    examples: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def describe_skipped(self) -> str:
        parts = []
        for why, count in sorted(self.skipped.items()):
            named = self.examples.get(why, ())
            more = ", …" if count > len(named) and named else ""
            parts.append(f"{count} {why}" + (f" ({', '.join(named)}{more})" if named else ""))
        return ", ".join(parts)


def propose(sample_sha256: str | None, sample_url: str | None, iocs: IocSet, allow: AllowList, cap: int) -> Proposal:
    """The sample's own hash (or URL), then the malicious dropped files, domains, IPs and URLs,
    each in canonical form and passing the value rules, at most `cap` of them."""
    skipped: dict[str, int] = {}
    examples: dict[str, tuple[str, ...]] = {}
    entries: list[tuple[IndicatorType, str]] = []
    seen: set[tuple[str, str]] = set()

    def skip(why: str, raw: str) -> None:
        skipped[why] = skipped.get(why, 0) + 1
        named = examples.get(why, ())
        if len(named) < _EXAMPLES:
            examples[why] = (*named, shown(raw, _EXAMPLE_CHARS))

    candidates: list[tuple[IndicatorType, str, bool]] = []
    if sample_sha256:
        candidates.append(("FileSha256", sample_sha256, True))
    if sample_url:
        candidates.append(("Url", sample_url, True))
    candidates += [("FileSha256", i.value, i.malicious) for i in iocs.file_hashes]
    candidates += [("DomainName", i.value, i.malicious) for i in iocs.domains]
    candidates += [("IpAddress", i.value, i.malicious) for i in iocs.ips]
    candidates += [("Url", i.value, i.malicious) for i in iocs.urls]
    for kind, raw, malicious in candidates:
        if not malicious:
            continue  # only what Joe itself flags as malicious
        checked = check_value(kind, raw, allow)
        if isinstance(checked, Skip):
            skip(checked.why, raw)
        elif checked not in seen:
            if len(entries) >= cap:
                skip("over the per-sample cap", raw)
                continue
            seen.add(checked)
            entries.append(checked)
    return Proposal(tuple(entries), skipped, examples)


def family(kind: IndicatorType) -> Family:
    return "file" if kind == "FileSha256" else "network"


@dataclass(frozen=True)
class IndicatorPolicy:
    """The user's choices for verdict actions (`joedefender.bootstrap` builds it from the settings).

    Defaults are the safe ones: off; malicious verdicts only; `Audit` with an alert (it tells the
    SOC, blocks nothing); expiry always set; caps on what one sample and one hour may push; a
    headroom below Defender's 15,000 active indicators so the tenant's own indicators still fit.
    """

    enabled: bool = False
    verdicts: frozenset[Detection] = frozenset({"malicious"})
    actions: Mapping[tuple[Detection, Family], IndicatorAction] = field(default_factory=dict)
    severities: Mapping[Detection, Severity] = field(
        default_factory=lambda: {"malicious": "High", "suspicious": "Medium"}
    )
    expiration_days: int = 30
    rbac_group_names: tuple[str, ...] = ()
    allow: AllowList = field(default_factory=AllowList)
    per_sample_cap: int = 50
    per_hour_cap: int = 5000
    tenant_limit: int = 15000
    tenant_headroom: int = 1000

    def wants(self, verdict: Verdict | None) -> bool:
        return self.enabled and verdict is not None and verdict.detection in self.verdicts

    def action(self, detection: Detection, kind: IndicatorType) -> IndicatorAction:
        return self.actions.get((detection, family(kind)), "Audit")

    def severity(self, detection: Detection) -> Severity:
        return self.severities.get(detection, "High" if detection == "malicious" else "Medium")

    @property
    def tenant_ceiling(self) -> int:
        """The most active indicators the connector lets the tenant reach."""
        return max(0, self.tenant_limit - self.tenant_headroom)


def render_indicator(
    policy: IndicatorPolicy,
    verdict: Verdict,
    kind: IndicatorType,
    value: str,
    *,
    sample: str,
    alert_id: str | None,
    expires_at: datetime,
) -> Indicator:
    """The indicator for one value: title and description name the connector, the alert, the
    sample and the analysis (all of them attacker-influenced text, cleaned and bounded)."""
    detection = verdict.detection
    action = policy.action(detection, kind)
    threat = shown(", ".join(verdict.threat_names), 80)
    title = shown(f"{TITLE_PREFIX} Joe Sandbox {detection} ({threat or kind})", 200)
    lines = [
        f"Pushed by joedefender from Joe Sandbox analysis {shown(verdict.webid, 40)}: "
        f"{detection}, score {verdict.score}.",
        f"Sample: {shown(sample, 300)}",
        f"Defender alert: {shown(alert_id, 80) or 'unknown'}",
        f"Analysis: {shown(verdict.link, 300)}",
    ]
    return Indicator(
        value=value,
        type=kind,
        action=action,
        severity=policy.severity(detection),
        title=title,
        description=shown(" | ".join(lines), 1000),
        expires_at=expires_at,
        generate_alert=True,
        rbac_group_names=policy.rbac_group_names,
    )
