"""What a sample job is about: a file (by sha256), a URL, or a file not yet hashed that a command
line named on one machine (by that machine and its path), each with one spelling.

URLs are read as browsers read them (`joedefender.domain.urls`, the WHATWG URL standard): the URL
a job submits to Joe Sandbox is `validated_url`, the standard's serialisation of what the device
opened; `normalise_url` (that, less the fragment) only names the job, so one site seen by two
alerts is one job. The Joe emulator keeps an independent normaliser on purpose, so a test can
tell them apart.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from joedefender.domain.text import shown
from joedefender.domain.urls import UrlError, WebUrl, parse_web_url
from joedefender.domain.windows_paths import ascii_upper

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class InvalidSampleError(ValueError):
    """Evidence that cannot name a sample (a malformed hash or URL)."""


def normalise_sha256(value: str) -> str:
    sha256 = value.strip().lower()
    if not _SHA256.fullmatch(sha256):
        raise InvalidSampleError(f"not a SHA-256: {value[:80]!r}")
    return sha256


def validated_url(value: str) -> str:
    """The URL as the WHATWG standard serialises it (what a browser, and the sandbox, opens)."""
    return _parsed(value).href


def normalise_url(value: str) -> str:
    """One spelling per URL, for the job's key: the validated URL without its fragment (scheme
    and host lowered, default port dropped, `\\` read as `/`, dot segments resolved)."""
    return _parsed(value).without_fragment


def _parsed(value: str) -> WebUrl:
    try:
        return parse_web_url(value)
    except UrlError as exc:
        raise InvalidSampleError(f"{exc}: {shown(value, 200)}") from None


@dataclass(frozen=True)
class SampleKey:
    """The identity of a sample job: `sha256:<hex>` for files, `url:<digest>` for URLs,
    `path:<digest>` for a file known by where it is until its hash is known."""

    kind: Literal["file", "url", "path"]
    value: str  # the sha256, the normalised URL, or `<machine id>|<PATH>`

    @classmethod
    def for_file(cls, sha256: str) -> SampleKey:
        return cls("file", normalise_sha256(sha256))

    @classmethod
    def for_url(cls, url: str) -> SampleKey:
        return cls("url", normalise_url(url))

    @classmethod
    def for_path(cls, machine_id: str, path: str) -> SampleKey:
        """The file at a Windows path on one machine (the same path in another case is the same file)."""
        return cls("path", f"{machine_id.lower()}|{ascii_upper(path)}")

    @property
    def id(self) -> str:
        if self.kind == "file":
            return f"sha256:{self.value}"
        return f"{self.kind}:" + hashlib.sha256(self.value.encode()).hexdigest()[:32]

    def __str__(self) -> str:
        return self.id
