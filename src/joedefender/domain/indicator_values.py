"""Which IOC values may become Defender indicators: the value rules, applied to canonical forms.

An IOC report is attacker data, and an indicator acts on every device of the tenant, so a value is
pushed only when it names the attacker's own infrastructure, never shared or private things. Hosts
are first read as browsers read them (`joedefender.domain.hosts`: `127.1`, `0x7f.0.0.1` and
`http://0177.0.0.1/` are all 127.0.0.1), then refused when they are:

- private, loopback, link-local, multicast, reserved or unspecified addresses, also when an IPv6
  address carries one inside it (IPv4-mapped, -compatible and -translated, 6to4 2002::/16,
  Teredo 2001::/32, NAT64 64:ff9b::/96; the local-use NAT64 prefix 64:ff9b:1::/48 always);
- internal or single-label names (`corp.local`, `intranet`, `.internal`, `.lan`, `.home.arpa`...);
- public suffixes (`co.uk`, and private-section entries like `github.io`: a name under them, such
  as `evil.github.io`, is one user's site and may be pushed), from the Public Suffix List that the
  `publicsuffixlist` package bundles (read from the package, never fetched at run time);
- shared platforms (`DEFAULT_SHARED_PLATFORMS`, extended by `DefenderIndicatorSharedPlatforms`):
  hosts whose content belongs to many users (code hosting, file sharing, chat CDNs, paste sites,
  URL shorteners); the host and every name under it are never pushed, as a domain or as a URL;
- on the allow-list (`DEFAULT_ALLOWED_DOMAINS`, networks, exact values; `DefenderIndicatorAllowList`);
- a known-benign hash (the empty file's);
- or, for URLs, carrying credentials, a `\\`, an invalid port, or not http(s); and any value
  with control, format (bidi, zero-width) or blank characters.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from publicsuffixlist import PublicSuffixList

from joedefender.domain.hosts import HostError, IPAddress, parse_host, parse_ip
from joedefender.domain.text import hidden
from joedefender.domain.urls import InvalidPort, UrlError, WebUrl, parse_web_url

IndicatorType = Literal["FileSha256", "DomainName", "IpAddress", "Url"]

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

# Shared platforms: malware is often hosted there, but blocking the host blocks every user's
# content (and the business's own use). Names under an entry are refused too: they are the
# platform's own. A domain or URL there is never pushed; the dropped file's hash still is.
DEFAULT_SHARED_PLATFORMS: tuple[str, ...] = (
    # code hosting
    "github.com", "raw.githubusercontent.com", "gist.githubusercontent.com", "objects.githubusercontent.com",
    "codeload.github.com", "gitlab.com", "bitbucket.org", "sourceforge.net", "pypi.org", "npmjs.com",
    # file sharing and storage
    "drive.google.com", "docs.google.com", "dropbox.com", "dropboxusercontent.com", "mediafire.com",
    "mega.nz", "wetransfer.com", "box.com", "onedrive.live.com", "1drv.ms", "archive.org",
    # chat and social platforms' content hosts
    "discord.com", "discordapp.com", "discordapp.net", "cdn.discordapp.com", "telegram.org", "t.me",
    "slack.com", "slack-files.com",
    # paste sites and URL shorteners
    "pastebin.com", "paste.ee", "bit.ly", "tinyurl.com", "is.gd", "t.co",
)  # fmt: skip

# Names that only resolve inside a network (RFC 6762, RFC 8375, ICANN's .internal, and suffixes
# in common internal use); single-label names never resolve publicly either.
INTERNAL_SUFFIXES = frozenset({
    "local", "localhost", "localdomain", "internal", "intranet", "lan", "corp", "home", "home.arpa",
    "private", "domain", "workgroup", "invalid", "alt", "arpa",
})  # fmt: skip

# Hashes of content found everywhere: the empty file (SHA-256, SHA-1, MD5).
KNOWN_BENIGN_HASHES = frozenset({
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "d41d8cd98f00b204e9800998ecf8427e",
})  # fmt: skip

MAX_VALUE = 2048
_HEX64 = re.compile(r"[0-9a-f]{64}")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_COMPATIBLE = ipaddress.ip_network("::/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")


@dataclass(frozen=True)
class AllowList:
    """Values never pushed beyond the fixed rules: allowed domains (and their subdomains), IPs and
    networks, exact hashes and URLs, and shared platforms (and their subdomains)."""

    domains: frozenset[str] = frozenset(DEFAULT_ALLOWED_DOMAINS)
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
        ipaddress.ip_network(n) for n in DEFAULT_ALLOWED_NETWORKS
    )
    exact: frozenset[str] = frozenset()
    platforms: frozenset[str] = frozenset(DEFAULT_SHARED_PLATFORMS)

    @classmethod
    def extended(cls, entries: Iterable[str], platforms: Iterable[str] = ()) -> AllowList:
        """The shipped defaults plus the user's entries (domains, IPs, CIDR networks, hashes, URLs)
        and shared platforms (host names)."""
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
        shared = set(DEFAULT_SHARED_PLATFORMS) | {p.strip().lower().rstrip(".").removeprefix("*.") for p in platforms}
        return cls(frozenset(domains), tuple(networks), frozenset(exact), frozenset(shared - {""}))

    def domain_allowed(self, domain: str) -> bool:
        return _under(domain, self.domains)

    def platform(self, domain: str) -> bool:
        return _under(domain, self.platforms)

    def ip_allowed(self, ip: IPAddress) -> bool:
        return any(ip in network for network in self.networks)


def _under(domain: str, names: frozenset[str]) -> bool:
    labels = domain.lower().rstrip(".").split(".")
    return any(".".join(labels[i:]) in names for i in range(len(labels)))


@dataclass(frozen=True)
class Skip:
    """Why a value is not pushed: a short reason, the same for every value refused for it."""

    why: str


Checked = tuple[IndicatorType, str] | Skip


def check_value(kind: IndicatorType, raw: str, allow: AllowList) -> Checked:
    """The (type, value) to push for an IOC, in canonical form, or why it is not pushed."""
    value = raw.strip()
    if not value or len(value) > MAX_VALUE:
        return Skip("malformed")
    if any(hidden(ch) or ch.isspace() for ch in value):
        return Skip("control, format or blank characters")
    if kind == "FileSha256":
        return _checked_hash(value.lower(), allow)
    if kind == "Url":
        return _checked_url(value, allow)
    ip = parse_ip(value)  # a domain IOC may be an address in disguise: `127.1`, `0x7f.0.0.1`
    if ip is not None:
        return _checked_ip(ip, allow)
    if kind == "IpAddress":
        return Skip("malformed")
    try:
        host = parse_host(value)
    except HostError:
        return Skip("malformed")
    refusal = _domain_refusal(host.text.rstrip("."), allow)
    return refusal or ("DomainName", host.text.rstrip("."))


def _checked_hash(digest: str, allow: AllowList) -> Checked:
    if not _HEX64.fullmatch(digest):
        return Skip("malformed")
    if digest in KNOWN_BENIGN_HASHES:
        return Skip("known-benign hash")
    return Skip("allow-listed") if digest in allow.exact else ("FileSha256", digest)


def _checked_ip(ip: IPAddress, allow: AllowList) -> Checked:
    embedded = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip, embedded = ip.ipv4_mapped, None  # an IPv4 address in IPv6 clothing: pushed as IPv4
    if embedded is not None and not all(_public(v4) for v4 in embedded):
        return Skip("IPv6 carrying a private or reserved IPv4")
    if not _public(ip) or ip in _NAT64_LOCAL:
        return Skip("private or reserved IP")
    if allow.ip_allowed(ip) or (embedded is not None and any(allow.ip_allowed(v4) for v4 in embedded)):
        return Skip("allow-listed")
    return ("IpAddress", str(ip))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...] | None:
    """The IPv4 addresses an IPv6 address stands for, when it is one of the forms that carry them."""
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo  # (server, client)
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64 or ip in _TRANSLATED or (ip in _COMPATIBLE and int(ip) > 1):
        return (low,)
    return None


def _public(ip: IPAddress) -> bool:
    excluded = ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
    return not (excluded or ip.is_reserved or ip.is_unspecified or not ip.is_global)


def _domain_refusal(domain: str, allow: AllowList) -> Skip | None:
    if not _DOMAIN.fullmatch(domain) or len(domain) > 253:
        return Skip("internal or single-label name") if "." not in domain else Skip("malformed")
    if _under(domain, INTERNAL_SUFFIXES):
        return Skip("internal or single-label name")
    if allow.domain_allowed(domain):
        return Skip("allow-listed")
    if allow.platform(domain):
        return Skip("shared platform")
    if _suffixes().is_public(domain):
        return Skip("public suffix")
    return None


@functools.cache
def _suffixes() -> PublicSuffixList:
    """The Public Suffix List the package bundles (ICANN and private sections), loaded once."""
    return PublicSuffixList()


def _checked_url(value: str, allow: AllowList) -> Checked:
    if "\\" in value:
        return Skip("URL with a backslash")
    if not value.lower().startswith(("http://", "https://")):
        return Skip("malformed")
    try:
        url = parse_web_url(value)
    except InvalidPort:
        return Skip("URL with an invalid port")
    except UrlError:
        return Skip("malformed")
    if url.has_credentials:
        return Skip("URL with credentials")
    if value.lower() in allow.exact or url.without_fragment.lower() in allow.exact:
        return Skip("allow-listed")
    host = _checked_url_host(url, allow)
    return host if isinstance(host, Skip) else ("Url", url.without_fragment)


def _checked_url_host(url: WebUrl, allow: AllowList) -> Skip | None:
    if url.host.ip is not None:
        checked = _checked_ip(url.host.ip, allow)
        return checked if isinstance(checked, Skip) else None
    return _domain_refusal(url.host.text.rstrip("."), allow)
