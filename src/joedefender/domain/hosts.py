"""Host names read as browsers read them: the WHATWG URL standard's host parser, for http(s).

An attacker's URL or IOC can spell one host many ways: `127.1`, `0177.0.0.1`, `0x7f.0.0.1` and
`2130706433` are all 127.0.0.1 to a browser (and to the sandbox, which opens the URL in one), and
`EX%41MPLE.com` is example.com. Every rule about a host (private addresses, allow-lists, public
suffixes) is applied to the canonical form this parser yields, never to the text as written.

What is implemented is the standard's host parser for special schemes (https://url.spec.whatwg.org/
#host-parsing): IPv6 literals, percent-decoding, "domain to ASCII" and the IPv4 number forms. The
one part delegated is UTS #46 mapping of non-ASCII names, to the `idna` package: it implements
IDNA 2008, which refuses some names the standard's UTS #46 processing accepts (symbols, some
hyphen placements), so such a host is refused here, never read differently. A property test
compares this parser with a WHATWG reference implementation (tests/domain/test_urls_whatwg.py).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The standard's forbidden domain code points: forbidden host code points, C0 controls, % and DEL.
_FORBIDDEN_DOMAIN = re.compile(r"[\x00-\x20#/:<>?@\[\\\]^|%\x7f]")
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
_IPV6_TEXT = re.compile(r"[0-9A-Fa-f:.]+")
# DNS names are at most 253 characters (254 with the root's dot), an IDN's Unicode form fewer: a
# longer host resolves nowhere, and refusing it keeps the IDNA step (Punycode is quadratic) bounded.
MAX_HOST = 254


class HostError(ValueError):
    """A host no browser would connect to, or one this parser cannot read exactly as a browser."""


@dataclass(frozen=True)
class Host:
    """A parsed host: `text` is its WHATWG serialisation (`[...]` around IPv6), `ip` its address."""

    text: str
    ip: IPAddress | None = None

    @property
    def domain(self) -> str | None:
        return None if self.ip is not None else self.text


def parse_host(text: str) -> Host:
    """The host as the WHATWG URL parser reads it in an http(s) URL, or `HostError` saying why not."""
    if text.startswith("["):
        if not text.endswith("]"):
            raise HostError("an IPv6 address without its closing bracket")
        return _ipv6_host(text[1:-1])
    if not text:
        raise HostError("an empty host")
    decoded = _PERCENT.sub(lambda m: bytes([int(m.group(1), 16)]), text.encode("utf-8", "surrogatepass"))
    domain = _domain_to_ascii(decoded.decode("utf-8", errors="replace"))
    if _ends_in_number(domain):
        return Host(*_ipv4(domain))
    return Host(domain)


def parse_ip(text: str) -> IPAddress | None:
    """An address in any spelling a browser accepts (IPv4 number forms, IPv6 with or without
    brackets), or None when the text is no address."""
    try:
        host = parse_host(f"[{text}]" if ":" in text and not text.startswith("[") else text)
    except HostError:
        return None
    return host.ip


def _domain_to_ascii(domain: str) -> str:
    """The standard's "domain to ASCII" with beStrict false: plain ASCII names are lowercased,
    anything else goes through UTS #46 (CheckHyphens, STD3 rules and DNS lengths off)."""
    if len(domain) > MAX_HOST:
        raise HostError(f"a host name of {len(domain)} characters (DNS allows {MAX_HOST - 1})")
    labels = domain.split(".")
    if domain.isascii() and not any(label[:4].lower() == "xn--" for label in labels):
        result = domain.lower()
    else:
        try:
            result = idna.encode(domain, uts46=True, std3_rules=False, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise HostError(f"an internationalised name this connector cannot read as browsers do ({exc})") from None
        if domain.endswith(".") and not result.endswith("."):
            result += "."  # `idna` drops the root label's dot; the standard keeps it
    if not result:
        raise HostError("an empty host")
    bad = _FORBIDDEN_DOMAIN.search(result)
    if bad is not None:
        raise HostError(f"a host with the forbidden character U+{ord(bad.group()):04X}")
    return result


def _ends_in_number(domain: str) -> bool:
    parts = domain.split(".")
    if parts[-1] == "":
        if len(parts) == 1:
            return False
        parts.pop()
    last = parts[-1]
    if last and last.isdigit() and last.isascii():
        return True
    return _ipv4_number(last) is not None and last[:2].lower() == "0x"


def _ipv4_number(part: str) -> int | None:
    """One part of an IPv4 address: decimal, octal (leading 0) or hexadecimal (0x), or None."""
    if part == "":
        return None
    radix = 10
    if part[:2].lower() == "0x":
        part, radix = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        part, radix = part[1:], 8
    if part == "":
        return 0
    digits = {10: "0123456789", 8: "01234567", 16: "0123456789abcdefABCDEF"}[radix]
    if not all(ch in digits for ch in part):
        return None
    return int(part, radix)


def _ipv4(domain: str) -> tuple[str, ipaddress.IPv4Address]:
    parts = domain.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        raise HostError(f"{len(parts)} numbers in an IPv4 address")
    numbers = [_ipv4_number(part) for part in parts]
    if any(n is None for n in numbers):
        raise HostError("an IPv4 address with a part that is no number")
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise HostError("an IPv4 address with a number out of range")
    address = values[-1]
    for index, value in enumerate(values[:-1]):
        address += value * 256 ** (3 - index)
    ip = ipaddress.IPv4Address(address)
    return str(ip), ip


def _ipv6_host(text: str) -> Host:
    if not _IPV6_TEXT.fullmatch(text):
        raise HostError("an IPv6 address with a character no address has")
    try:
        ip = ipaddress.IPv6Address(text)
    except ValueError:
        raise HostError("an IPv6 address that does not parse") from None
    return Host(f"[{serialise_ipv6(ip)}]", ip)


def serialise_ipv6(ip: ipaddress.IPv6Address) -> str:
    """The standard's IPv6 serialisation: lowercase hex pieces, the first longest run of two or
    more zero pieces as `::`, and no dotted IPv4 tail (`::ffff:102:304`, not `::ffff:1.2.3.4`)."""
    pieces = [(int(ip) >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best_start, best_length = -1, 1
    start = None
    for index, piece in enumerate([*pieces, 1]):
        if piece == 0 and start is None:
            start = index
        elif piece != 0 and start is not None:
            if index - start > best_length:
                best_start, best_length = start, index - start
            start = None
    if best_start < 0:
        return ":".join(f"{p:x}" for p in pieces)
    head = ":".join(f"{p:x}" for p in pieces[:best_start])
    tail = ":".join(f"{p:x}" for p in pieces[best_start + best_length :])
    return f"{head}::{tail}"
