"""The `SandboxPort` over the Joe Sandbox client: the core's verdicts and submission status out,
its error vocabulary raised.

As in the Defender adapter, errors are translated by a wrapper around each method rather than by
giving the client's error classes a second base: the client stays usable on its own (`joedefender
check` reads its types), and the mapping is one table. A translated error keeps the client's
message (which never carries the API key) and chains the client's error as its cause.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any

from joedefender.adapters.joe.client import JoeSandboxClient
from joedefender.adapters.joe.errors import (
    JoeAuthError,
    JoeQuotaError,
    JoeRequestError,
    JoeSandboxError,
    JoeUnavailableError,
)
from joedefender.adapters.joe.systems import SystemChooser
from joedefender.domain.errors import Misconfigured, PortError, QuotaExhausted, Rejected, Transient
from joedefender.domain.platforms import Platform
from joedefender.domain.verdicts import IocSet, SubmissionStatus, Verdict
from joedefender.pipeline.ports import SandboxPort

SERVICE = "joe"


def core_error(exc: JoeSandboxError, *, submission: bool = False) -> PortError:
    """The core's error for a Joe client error. A failed submission may have reached Joe before
    the answer was lost (jbxapi cannot tell), so a transient one says `maybe_applied`."""
    if isinstance(exc, JoeAuthError):
        return Misconfigured(exc.message, service=SERVICE)
    if isinstance(exc, JoeQuotaError):
        return QuotaExhausted(exc.message, service=SERVICE)
    if isinstance(exc, JoeRequestError):
        return Rejected(exc.message, service=SERVICE)
    # JoeUnavailableError, and answers the client could not read
    return Transient(exc.message, service=SERVICE, maybe_applied=submission and isinstance(exc, JoeUnavailableError))


@contextmanager
def translated(*, submission: bool = False) -> Iterator[None]:
    """Raise the core's error for any Joe client error raised inside the block."""
    try:
        yield
    except JoeSandboxError as exc:
        raise core_error(exc, submission=submission) from exc


class JoeSandboxAdapter:
    """Joe Sandbox as the core sees it; raises only `joedefender.domain.errors` types."""

    def __init__(self, client: JoeSandboxClient, systems: SystemChooser | None = None) -> None:
        self.client = client
        self.systems = systems if systems is not None else SystemChooser(client, {})

    def __repr__(self) -> str:
        return f"JoeSandboxAdapter({self.client!r})"

    def close(self) -> None:
        self.client.close()

    def lookup(self, sha256: str) -> tuple[Verdict, ...]:
        with translated():
            return self.client.lookup_all(sha256)

    def lookup_url(self, url: str) -> tuple[Verdict, ...]:
        with translated():
            return self.client.lookup_url_all(url)

    def submit_file(
        self,
        stream: IO[bytes],
        filename: str,
        *,
        tags: Sequence[str] = (),
        comments: str | None = None,
        params: Mapping[str, Any] | None = None,
        platform: Platform | None = None,
    ) -> str:
        """`platform`: the device the sample came from, which picks the analysis systems."""
        with translated():
            systems = self.systems.submission_systems(platform)
        with translated(submission=True):
            return self.client.submit_file(
                stream, filename, tags=tags, comments=comments, params=params, systems=systems
            )

    def submit_url(
        self,
        url: str,
        *,
        tags: Sequence[str] = (),
        comments: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> str:
        with translated(submission=True):
            return self.client.submit_url(url, tags=tags, comments=comments, params=params)

    def submission_info(self, submission_id: str) -> SubmissionStatus:
        with translated():
            info = self.client.submission_info(submission_id)
        return SubmissionStatus(submission_id=info.submission_id, status=info.status, webid=info.webid)

    def verdict(self, webid: str) -> Verdict:
        with translated():
            return self.client.verdict(webid)

    def find_analysis(self, marker: str) -> str | None:
        with translated():
            return self.client.find_analysis(marker)

    def analysis_status(self, webid: str) -> str:
        with translated():
            return self.client.analysis_status(webid)

    def iocs(self, webid: str) -> IocSet:
        """The analysis' indicators, for the verdict actions."""
        with translated():
            return self.client.iocs(webid)


_: type[SandboxPort] = JoeSandboxAdapter  # mypy checks here that the adapter is the port
