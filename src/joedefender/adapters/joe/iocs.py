"""Reads the indicators out of Joe's `iocjson` / `jsonfixed` reports (joe-api.md 2.4).

Both share the layout `analysis.{domaininfo.domain[], ipinfo.ip[], urlinfo.url[],
droppedinfo.hash[]}` with XML-style `@attribute` keys; any section may be null, and a list of
one may arrive as a bare object. Attribute values are strings ("true"/"false").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from joedefender.domain.verdicts import Ioc, IocSet

_SHA256_ALGOS = frozenset({"sha-256", "sha256"})
_HEX = frozenset("0123456789abcdef")


def parse_ioc_report(document: object) -> IocSet:
    """The IOC set of a decoded report; unknown or malformed parts are skipped, never fatal."""
    root = document.get("analysis", document) if isinstance(document, dict) else None
    if not isinstance(root, dict):
        return IocSet()
    return IocSet(
        file_hashes=_dedupe(_dropped_hashes(root.get("droppedinfo")), fold=True),
        domains=_dedupe(_attribute_iocs(root.get("domaininfo"), "domain", "@name"), fold=True),
        ips=_dedupe(_attribute_iocs(root.get("ipinfo"), "ip", "@ip"), fold=True),
        urls=_dedupe(_attribute_iocs(root.get("urlinfo"), "url", "@name"), fold=False),
    )


def _items(section: object, key: str) -> Iterator[dict[str, Any]]:
    if not isinstance(section, dict):
        return
    entries = section.get(key)
    for entry in entries if isinstance(entries, list) else [entries]:
        if isinstance(entry, dict):
            yield entry


def _flag(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def _attribute_iocs(section: object, key: str, attribute: str) -> Iterator[Ioc]:
    for entry in _items(section, key):
        value = entry.get(attribute)
        if isinstance(value, str) and value.strip() and value.strip().lower() != "unknown":
            yield Ioc(value=value.strip(), malicious=_flag(entry.get("@malicious")))


def _dropped_hashes(section: object) -> Iterator[Ioc]:
    for entry in _items(section, "hash"):
        values = entry.get("value")
        for item in values if isinstance(values, list) else [values]:
            if not isinstance(item, dict) or str(item.get("@algo", "")).lower() not in _SHA256_ALGOS:
                continue
            digest = str(item.get("$", "")).strip().lower()
            if len(digest) == 64 and set(digest) <= _HEX:
                yield Ioc(value=digest, malicious=_flag(entry.get("@malicious")))


def _dedupe(iocs: Iterator[Ioc], *, fold: bool) -> tuple[Ioc, ...]:
    """One entry per value (case-folded for hashes, domains and IPs); malicious if any says so."""
    seen: dict[str, Ioc] = {}
    for ioc in iocs:
        key = ioc.value.lower() if fold else ioc.value
        value = ioc.value.lower() if fold else ioc.value
        known = seen.get(key)
        seen[key] = Ioc(value=value, malicious=ioc.malicious or (known is not None and known.malicious))
    return tuple(seen.values())
