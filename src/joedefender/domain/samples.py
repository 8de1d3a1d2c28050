"""What a sample job is about: a file (by sha256) or a URL, each with one spelling.

`normalise_url` is the project's one URL normaliser (the Joe emulator keeps an independent one
on purpose, so a test can tell them apart).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class InvalidSampleError(ValueError):
    """Evidence that cannot name a sample (a malformed hash or URL)."""


def normalise_sha256(value: str) -> str:
    sha256 = value.strip().lower()
    if not _SHA256.fullmatch(sha256):
        raise InvalidSampleError(f"not a SHA-256: {value[:80]!r}")
    return sha256


def normalise_url(value: str) -> str:
    """One spelling per URL, so the same site seen by two alerts is one job (scheme and host lowered,
    default port and fragment dropped, path and query kept as they are)."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        raise InvalidSampleError(f"not an http(s) URL: {value[:200]!r}")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidSampleError(f"bad port in URL: {value[:200]!r}") from exc
    netloc = host if port in (None, _DEFAULT_PORTS[parts.scheme.lower()]) else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


@dataclass(frozen=True)
class SampleKey:
    """The identity of a sample job: `sha256:<hex>` for files, `url:<digest>` for URLs."""

    kind: Literal["file", "url"]
    value: str  # the sha256, or the normalised URL

    @classmethod
    def for_file(cls, sha256: str) -> SampleKey:
        return cls("file", normalise_sha256(sha256))

    @classmethod
    def for_url(cls, url: str) -> SampleKey:
        return cls("url", normalise_url(url))

    @property
    def id(self) -> str:
        if self.kind == "file":
            return f"sha256:{self.value}"
        return "url:" + hashlib.sha256(self.value.encode()).hexdigest()[:32]

    def __str__(self) -> str:
        return self.id
