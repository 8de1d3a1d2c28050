"""Which IOC values may become indicators: every case the security review named, with its outcome.

Hosts are read as browsers read them before any rule applies; nothing private, internal, shared,
allow-listed or known-benign is pushed, and every value left out is counted under its reason."""

from __future__ import annotations

import hashlib

import pytest

from joedefender.domain.indicator_values import AllowList, IndicatorType, Skip, check_value
from joedefender.domain.indicators import propose
from joedefender.domain.verdicts import Ioc, IocSet

ALLOW = AllowList()
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

REFUSED: list[tuple[IndicatorType, str, str]] = [
    # loopback and private addresses in non-canonical IPv4 forms, as domains, IPs and URLs
    ("DomainName", "127.1", "private or reserved IP"),
    ("DomainName", "0177.0.0.1", "private or reserved IP"),
    ("DomainName", "0x7f.0.0.1", "private or reserved IP"),
    ("DomainName", "2130706433", "private or reserved IP"),
    ("DomainName", "0xa.1", "private or reserved IP"),
    ("IpAddress", "127.1", "private or reserved IP"),
    ("IpAddress", "0177.0.0.1", "private or reserved IP"),
    ("IpAddress", "0x7f.0.0.1", "private or reserved IP"),
    ("IpAddress", "0xc0.0xa8.1.1", "private or reserved IP"),
    ("Url", "http://127.1/", "private or reserved IP"),
    ("Url", "http://0x7f.0.0.1/", "private or reserved IP"),
    ("Url", "http://0177.0.0.1:8080/x", "private or reserved IP"),
    ("Url", "http://[::1]/", "private or reserved IP"),
    ("Url", "http://%31%32%37.0.0.1/", "private or reserved IP"),
    # IPv6 forms that carry a private IPv4
    ("IpAddress", "2002:a00:1::", "IPv6 carrying a private or reserved IPv4"),  # 6to4 of 10.0.0.1
    ("IpAddress", "2002:c0a8:101::1", "IPv6 carrying a private or reserved IPv4"),  # 6to4 of 192.168.1.1
    ("IpAddress", "64:ff9b::a00:1", "IPv6 carrying a private or reserved IPv4"),  # NAT64 of 10.0.0.1
    ("IpAddress", "::10.0.0.1", "IPv6 carrying a private or reserved IPv4"),  # IPv4-compatible
    ("IpAddress", "::ffff:0:a00:1", "IPv6 carrying a private or reserved IPv4"),  # IPv4-translated
    ("IpAddress", "::ffff:10.0.0.1", "private or reserved IP"),  # IPv4-mapped: it is 10.0.0.1
    ("IpAddress", "2001:0:4136:e378:8000:63bf:f5ff:fffe", "IPv6 carrying a private or reserved IPv4"),  # Teredo
    ("IpAddress", "64:ff9b:1::808:808", "private or reserved IP"),  # local-use NAT64
    ("Url", "http://[2002:a00:1::]/", "IPv6 carrying a private or reserved IPv4"),
    ("DomainName", "[2002:a00:1::]", "IPv6 carrying a private or reserved IPv4"),
    # public suffixes (ICANN and private sections) and shared platforms
    ("DomainName", "co.uk", "public suffix"),
    ("DomainName", "github.io", "public suffix"),
    ("DomainName", "blogspot.com", "public suffix"),
    ("DomainName", "com", "internal or single-label name"),
    ("DomainName", "github.com", "shared platform"),
    ("DomainName", "api.github.com", "shared platform"),
    ("DomainName", "raw.githubusercontent.com", "shared platform"),
    ("DomainName", "discord.com", "shared platform"),
    ("DomainName", "cdn.discordapp.com", "shared platform"),
    ("Url", "https://raw.githubusercontent.com/evil/repo/main/payload.ps1", "shared platform"),
    ("Url", "https://co.uk/", "public suffix"),
    # internal and single-label names
    ("DomainName", "corp.local", "internal or single-label name"),
    ("DomainName", "intranet", "internal or single-label name"),
    ("DomainName", "fileserver.corp", "internal or single-label name"),
    ("DomainName", "nas.home.arpa", "internal or single-label name"),
    ("DomainName", "db.internal", "internal or single-label name"),
    ("DomainName", "printer.lan", "internal or single-label name"),
    ("Url", "http://wpad/wpad.dat", "internal or single-label name"),
    ("Url", "http://dc01.corp.local/", "internal or single-label name"),
    # known-benign hashes
    ("FileSha256", EMPTY_SHA256, "known-benign hash"),
    ("FileSha256", EMPTY_SHA256.upper(), "known-benign hash"),
    # URLs with credentials, control or format characters, an invalid port, a backslash
    ("Url", "http://user:pass@c2.evil.example/", "URL with credentials"),
    ("Url", "http://microsoft.com@c2.evil.example/", "URL with credentials"),
    ("Url", "http://c2.evil\u202eexample/", "control, format or blank characters"),
    ("Url", "http://c2.ev\u200bil.example/", "control, format or blank characters"),
    ("Url", "http://c2.evil.example/\x1b[2J", "control, format or blank characters"),
    ("Url", "http://c2.evil.example:99999/", "URL with an invalid port"),
    ("Url", "http://c2.evil.example:8o/", "URL with an invalid port"),
    ("Url", "http://evil.example\\@microsoft.com/", "URL with a backslash"),
    ("Url", "http://c2.evil.example/a\\b", "URL with a backslash"),
    ("DomainName", "c2.ev\u00adil.example", "control, format or blank characters"),  # soft hyphen
    ("DomainName", "c2.evil.example\u2067", "control, format or blank characters"),
    ("DomainName", "c2 .evil.example", "control, format or blank characters"),
    # the shipped allow-list, also through the embedded address
    ("IpAddress", "8.8.8.8", "allow-listed"),
    ("IpAddress", "2002:808:808::1", "allow-listed"),  # 6to4 of 8.8.8.8
    ("DomainName", "settings-win.data.microsoft.com", "allow-listed"),
    ("Url", "https://www.MICROSOFT.com/", "allow-listed"),
    # not http(s), or no URL at all
    ("Url", "ftp://c2.evil.example/x", "malformed"),
    ("Url", "c2.evil.example/gate.php", "malformed"),
    ("DomainName", "c2_evil.example", "malformed"),
    ("IpAddress", "c2.evil.example", "malformed"),
    ("FileSha256", "abc", "malformed"),
]

PUSHED: list[tuple[IndicatorType, str, tuple[IndicatorType, str]]] = [
    ("DomainName", "C2.Evil.Example.", ("DomainName", "c2.evil.example")),
    ("DomainName", "evil.github.io", ("DomainName", "evil.github.io")),  # one user's site under a suffix
    ("DomainName", "bücher-evil.example", ("DomainName", "xn--bcher-evil-9db.example")),
    ("DomainName", "185.195.25.79", ("IpAddress", "185.195.25.79")),  # an address given as a domain
    ("DomainName", "0xb9.0xc3.25.79", ("IpAddress", "185.195.25.79")),
    ("IpAddress", "3116570959", ("IpAddress", "185.195.25.79")),
    ("IpAddress", "2002:b9c3:194f::1", ("IpAddress", "2002:b9c3:194f::1")),  # 6to4 of a public address
    ("IpAddress", "::ffff:185.195.25.79", ("IpAddress", "185.195.25.79")),
    ("Url", "HTTP://C2.Evil.Example:80/gate.php?id=1#top", ("Url", "http://c2.evil.example/gate.php?id=1")),
    ("Url", "http://0xb9.0xc3.25.79/x", ("Url", "http://185.195.25.79/x")),
    ("Url", "https://evil.github.io/drop", ("Url", "https://evil.github.io/drop")),
    ("FileSha256", "AB" * 32, ("FileSha256", "ab" * 32)),
]


@pytest.mark.parametrize(("kind", "value", "why"), REFUSED)
def test_the_value_is_refused_with_its_reason(kind: IndicatorType, value: str, why: str) -> None:
    assert check_value(kind, value, ALLOW) == Skip(why)


@pytest.mark.parametrize(("kind", "value", "pushed"), PUSHED)
def test_the_value_is_pushed_in_canonical_form(kind: IndicatorType, value: str, pushed: tuple[str, str]) -> None:
    assert check_value(kind, value, ALLOW) == pushed


def test_shared_platforms_and_hashes_are_extended_by_the_settings_lists() -> None:
    allow = AllowList.extended(["ab" * 32], platforms=["files.share.example", "*.cdn.example"])
    assert check_value("DomainName", "files.share.example", allow) == Skip("shared platform")
    assert check_value("DomainName", "eu.files.share.example", allow) == Skip("shared platform")
    assert check_value("Url", "https://x.cdn.example/a", allow) == Skip("shared platform")
    assert check_value("DomainName", "share.example", allow) == ("DomainName", "share.example")
    assert check_value("DomainName", "github.com", allow) == Skip("shared platform")  # the shipped list stays
    assert check_value("FileSha256", "ab" * 32, allow) == Skip("allow-listed")


def test_every_refusal_is_counted_under_its_reason_with_the_values_shown_safely() -> None:
    iocs = IocSet(
        domains=tuple(Ioc(value=v, malicious=True) for v in ("127.1", "github.io", "corp.local", "c2.evil.example")),
        ips=(Ioc(value="2002:a00:1::", malicious=True), Ioc(value="10.0.0.1", malicious=True)),
        urls=(Ioc(value="http://x.example/\x1b[31m\u202e", malicious=True),),
        file_hashes=(Ioc(value=EMPTY_SHA256, malicious=True),),
    )
    proposal = propose(None, None, iocs, ALLOW, cap=50)
    assert proposal.entries == (("DomainName", "c2.evil.example"),)
    text = proposal.describe_skipped()
    assert "2 private or reserved IP (127.1, 10.0.0.1)" in text
    assert "1 public suffix (github.io)" in text
    assert "1 internal or single-label name (corp.local)" in text
    assert "1 IPv6 carrying a private or reserved IPv4 (2002:a00:1::)" in text
    assert f"1 known-benign hash ({EMPTY_SHA256})" in text
    assert "1 control, format or blank characters (http://x.example/\\u{001B}[31m\\u{202E})" in text
    assert "\x1b" not in text
    assert "\u202e" not in text


def test_the_reasons_name_a_few_values_and_stay_bounded_for_ten_thousand() -> None:
    iocs = IocSet(ips=tuple(Ioc(value=f"10.{i // 256}.{i % 256}.1", malicious=True) for i in range(10_000)))
    text = propose(None, None, iocs, ALLOW, cap=50).describe_skipped()
    assert text == "10000 private or reserved IP (10.0.0.1, 10.0.1.1, 10.0.2.1, …)"
