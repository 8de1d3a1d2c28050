"""What the pipeline needs from Defender and Joe Sandbox, as protocols.

The client adapters in `joedefender.clients` implement these; the pipeline never imports them,
so it can be driven by any implementation (and tested against the emulators through the real ones).
The data types are the clients' wire models.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import BinaryIO, Protocol

from joedefender.clients.joe.models import SubmissionStatus, Verdict
from joedefender.clients.mde.models import (
    Alert,
    LibraryFile,
    LiveResponseCommand,
    Machine,
    MachineAction,
    ScriptResult,
)


class DefenderApi(Protocol):
    def list_alerts(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        time_field: str = ...,
        statuses: Sequence[str] = ...,
        severities: Sequence[str] = ...,
        detection_sources: Sequence[str] = ...,
        expand_evidence: bool = ...,
        page_size: int = ...,
    ) -> Iterator[Alert]: ...

    def get_alert(self, alert_id: str) -> Alert: ...

    def add_comment(self, alert_id: str, text: str) -> Alert: ...

    def get_machine(self, machine_id: str) -> Machine: ...

    def list_machine_actions(
        self, *, machine_id: str | None = ..., status: str | None = ..., type: str | None = ...
    ) -> list[MachineAction]: ...

    def get_machine_action(self, action_id: str) -> MachineAction: ...

    def cancel_machine_action(self, action_id: str, comment: str) -> MachineAction: ...

    def run_live_response(
        self, machine_id: str, commands: Sequence[LiveResponseCommand], comment: str
    ) -> MachineAction: ...

    def stream_result(
        self, action_id: str, index: int, *, gunzip: bool, max_bytes: int
    ) -> AbstractContextManager[Iterator[bytes]]: ...

    def get_script_result(self, action_id: str, index: int) -> ScriptResult: ...

    def ensure_library_file(
        self, name: str, content: bytes, *, description: str, parameters_description: str
    ) -> LibraryFile: ...


class SandboxApi(Protocol):
    def lookup(self, sha256: str) -> Verdict | None: ...

    def lookup_url(self, url: str) -> Verdict | None: ...

    def submit_file(
        self,
        stream: BinaryIO,
        filename: str,
        *,
        tags: Sequence[str],
        comments: str | None,
    ) -> str: ...

    def submit_url(self, url: str, *, tags: Sequence[str], comments: str | None) -> str: ...

    def submission_info(self, submission_id: str) -> SubmissionStatus: ...

    def verdict(self, webid: str) -> Verdict: ...

    def find_analysis(self, marker: str) -> str | None:
        """The webid of an analysis whose comments carry `marker`: how a retried step finds the
        submission a crash kept it from recording."""
        ...

    def analysis_status(self, webid: str) -> str: ...
