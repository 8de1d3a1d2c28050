"""Verdict actions as pure rules: which IOCs of an analysis become Defender indicators, and how.

Everything here is data from the attacker's side (Joe's IOC report, Defender's alert), so values
are validated before they are proposed, texts are stripped of control characters and bounded,
and nothing is pushed that the allow-list or the IP rules exclude. The shipped allow-list keeps
the connector from blocking the infrastructure every Windows machine talks to (an analysis
contacts Microsoft, CDNs and certificate authorities as a matter of course).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from joedefender.domain.verdicts import Detection, IocSet, Verdict

APPLICATION = "joedefender"
TITLE_PREFIX = "joedefender:"

IndicatorType = Literal["FileSha256", "DomainName", "IpAddress", "Url"]
IndicatorAction = Literal["Audit", "Warn", "Block", "BlockAndRemediate"]
Severity = Literal["Informational", "Low", "Medium", "High"]
Family = Literal["file", "network"]

ACTIONS: tuple[IndicatorAction, ...] = ("Audit", "Warn", "Block", "BlockAndRemediate")
SEVERITIES: tuple[Severity, ...] = ("Informational", "Low", "Medium", "High")
FILE_ONLY_ACTIONS = frozenset({"BlockAndRemediate"})

# Domains never pushed (a value matches an entry or any subdomain of it): Microsoft and Windows
# update, CDNs, certificate authorities' OCSP/CRL hosts and the sandbox's own infrastructure.
DEFAULT_ALLOWED_DOMAINS: tuple[str, ...] = (
    # Microsoft, Windows, Office, Azure
    "microsoft.com", "windows.com", "windows.net", "windowsupdate.com", "update.microsoft.com",
    "msftncsi.com", "msftconnecttest.com", "live.com", "live.net", "office.com", "office.net",
    "office365.com", "microsoftonline.com", "msauth.net", "msftauth.net", "bing.com", "bing.net",
    "azure.com", "azure.net", "azureedge.net", "azurefd.net", "msedge.net", "msn.com",
    "skype.com", "sharepoint.com", "onedrive.com", "outlook.com", "digicert.com",
    "trafficmanager.net", "s-microsoft.com", "gfx.ms", "aka.ms", "xboxlive.com",
    # CDNs and certificate authorities
    "akamai.net", "akamaiedge.net", "akamaihd.net", "akamaized.net", "edgekey.net", "edgesuite.net",
    "cloudflare.com", "cloudflare.net", "cloudfront.net", "fastly.net", "fastly.com",
    "googleapis.com", "gstatic.com", "google.com", "googleusercontent.com", "amazonaws.com",
    "apple.com", "icloud.com", "letsencrypt.org", "lencr.org", "globalsign.com", "sectigo.com",
    "usertrust.com", "comodoca.com", "verisign.com", "symcd.com", "symcb.com", "entrust.net",
    "godaddy.com", "identrust.com", "pki.goog",
    # OS and software update
    "ubuntu.com", "debian.org", "mozilla.org", "mozilla.net", "adobe.com",
    # the sandbox's own infrastructure
    "joesecurity.org", "joesandbox.com",
)  # fmt: skip

# Public DNS resolvers every sandboxed machine may query.
DEFAULT_ALLOWED_NETWORKS: tuple[str, ...] = (
    "8.8.8.8/32", "8.8.4.4/32", "1.1.1.1/32", "1.0.0.1/32", "9.9.9.9/32", "149.112.112.112/32",
    "208.67.222.222/32", "208.67.220.220/32", "2001:4860:4860::8888/128", "2001:4860:4860::8844/128",
    "2606:4700:4700::1111/128",
)  # fmt: skip

_MAX_VALUE = 2048
_HEX64 = re.compile(r"[0-9a-f]{64}")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


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


def clean_text(text: str | None, limit: int) -> str:
    """Attacker-controlled text made safe to show: control characters out, length bounded."""
    flat = _CONTROL.sub(" ", text or "").strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class AllowList:
    """Values never pushed: domains (and their subdomains), IPs and networks, exact hashes and URLs."""

    domains: frozenset[str] = frozenset(DEFAULT_ALLOWED_DOMAINS)
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
        ipaddress.ip_network(n) for n in DEFAULT_ALLOWED_NETWORKS
    )
    exact: frozenset[str] = frozenset()

    @classmethod
    def extended(cls, entries: Iterable[str]) -> AllowList:
        """The shipped defaults plus the user's entries (domains, IPs, CIDR networks, hashes, URLs)."""
        domains, exact = set(DEFAULT_ALLOWED_DOMAINS), set()
        networks = [ipaddress.ip_network(n) for n in DEFAULT_ALLOWED_NETWORKS]
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if "/" in entry or _HEX64.fullmatch(entry):
                exact.add(entry)
            else:
                domains.add(entry.removeprefix("*."))
        return cls(frozenset(domains), tuple(networks), frozenset(exact))

    def domain_allowed(self, domain: str) -> bool:
        labels = domain.lower().rstrip(".").split(".")
        return any(".".join(labels[i:]) in self.domains for i in range(len(labels)))

    def ip_allowed(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip in network for network in self.networks)


def _public_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address if it is a global unicast one; private, loopback, link-local, multicast,
    reserved and unspecified addresses are never indicators."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    excluded = ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
    if excluded or ip.is_reserved or ip.is_unspecified or not ip.is_global:
        return None
    return ip


@dataclass(frozen=True)
class Proposal:
    """What one analysis proposes: the (type, value) pairs to push and why others were left out."""

    entries: tuple[tuple[IndicatorType, str], ...]
    skipped: Mapping[str, int] = field(default_factory=dict)

    def describe_skipped(self) -> str:
        return ", ".join(f"{count} {why}" for why, count in sorted(self.skipped.items()) if count)


def propose(sample_sha256: str | None, sample_url: str | None, iocs: IocSet, allow: AllowList, cap: int) -> Proposal:
    """The sample's own hash (or URL), then the malicious dropped files, domains, IPs and URLs,
    each valid, not allow-listed and not private, at most `cap` of them."""
    skipped: dict[str, int] = {}
    entries: list[tuple[IndicatorType, str]] = []
    seen: set[tuple[str, str]] = set()

    def skip(why: str) -> None:
        skipped[why] = skipped.get(why, 0) + 1

    def add(kind: IndicatorType, value: str) -> None:
        if (kind, value) in seen:
            return
        if len(entries) >= cap:
            skip("over the per-sample cap")
            return
        seen.add((kind, value))
        entries.append((kind, value))

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
        checked = _checked(kind, raw.strip(), allow)
        if isinstance(checked, _Skip):
            skip(checked.why)
        else:
            add(kind, checked)
    return Proposal(tuple(entries), skipped)


@dataclass(frozen=True)
class _Skip:
    why: str


def _checked(kind: IndicatorType, value: str, allow: AllowList) -> str | _Skip:
    """The value as pushed, or why it is not."""
    if not value or len(value) > _MAX_VALUE or any(c.isspace() for c in value):
        return _Skip("malformed")
    if kind == "FileSha256":
        digest = value.lower()
        if not _HEX64.fullmatch(digest):
            return _Skip("malformed")
        return _Skip("allow-listed") if digest in allow.exact else digest
    if kind == "IpAddress":
        ip = _public_ip(value)
        if ip is None:
            return _Skip("private or reserved IP") if _is_ip(value) else _Skip("malformed")
        return _Skip("allow-listed") if allow.ip_allowed(ip) else str(ip)
    if kind == "DomainName":
        domain = value.lower().rstrip(".")
        if _is_ip(domain):
            return _checked("IpAddress", domain, allow)
        if len(domain) > 253 or not _DOMAIN.fullmatch(domain):
            return _Skip("malformed")
        return _Skip("allow-listed") if allow.domain_allowed(domain) else domain
    return _checked_url(value, allow)


def _checked_url(value: str, allow: AllowList) -> str | _Skip:
    try:
        parts = urlsplit(value)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        return _Skip("malformed")
    if parts.scheme.lower() not in ("http", "https") or not host:
        return _Skip("malformed")
    if value.lower() in allow.exact:
        return _Skip("allow-listed")
    if _is_ip(host):
        ip = _public_ip(host)
        if ip is None:
            return _Skip("private or reserved IP")
        return _Skip("allow-listed") if allow.ip_allowed(ip) else value
    if not _DOMAIN.fullmatch(host.lower()):
        return _Skip("malformed")
    return _Skip("allow-listed") if allow.domain_allowed(host) else value


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


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
    threat = clean_text(", ".join(verdict.threat_names), 80)
    title = clean_text(f"{TITLE_PREFIX} Joe Sandbox {detection} ({threat or kind})", 200)
    lines = [
        f"Pushed by joedefender from Joe Sandbox analysis {clean_text(verdict.webid, 40)}: "
        f"{detection}, score {verdict.score}.",
        f"Sample: {clean_text(sample, 300)}",
        f"Defender alert: {clean_text(alert_id, 80) or 'unknown'}",
        f"Analysis: {clean_text(verdict.link, 300)}",
    ]
    return Indicator(
        value=value,
        type=kind,
        action=action,
        severity=policy.severity(detection),
        title=title,
        description=clean_text(" | ".join(lines), 1000),
        expires_at=expires_at,
        generate_alert=True,
        rbac_group_names=policy.rbac_group_names,
    )
