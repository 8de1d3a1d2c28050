"""What the workflow needs from the world, in the core's own types: Defender, the sandbox, storage.

Adapters implement these protocols and map their wire models and errors into `joedefender.domain`
(errors into `joedefender.domain.errors`); the core imports no adapter, so SQLite, memory and
Azure storage, the real clients and in-memory fakes are interchangeable.

Storage builds exactly-once effects from optimistic versions, atomic creation, leases on work
items and check-and-set leases on machines, never from locks held across calls. A step's writes
(documents, history lines, the next work items) go through one `UnitOfWork`: all or nothing.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, BinaryIO, Protocol

from joedefender.domain.alerts import Alert
from joedefender.domain.errors import JoeDefenderError
from joedefender.domain.incidents import Incident
from joedefender.domain.indicators import ExistingIndicator, ImportResult, Indicator
from joedefender.domain.liveresponse import Command, LiveResponseAction, Machine
from joedefender.domain.platforms import Platform
from joedefender.domain.verdicts import IocSet, SubmissionStatus, Verdict

# --- Defender and the sandbox ----------------------------------------------------------------


class Start(StrEnum):
    """A call whose budget is small enough that the workflow paces it: it asks when its turn is."""

    LIVE_RESPONSE = "live response"  # runliveresponse: 10 a minute
    COMMENT_BATCH = "comment batch"  # alerts/batchUpdate: 10 a minute


class DefenderPort(Protocol):
    """Defender for Endpoint. Raises `joedefender.domain.errors` types."""

    # Whether `comment_alerts` writes many alerts in one call under a budget of its own (the MDE
    # API's batchUpdate, 10 a minute), which write-back paces; False: one call per alert, paced
    # by the alert source's own budget (Graph), so write-back waits for no batch turn.
    batches_comments: bool

    def start_turn(self, start: Start) -> float:
        """Real seconds until the tenant's budget admits `start` (0: now), as the client's
        limiter knows it (on Azure, the budget every instance shares): asks Defender nothing and
        never blocks, so a step can be put off rather than hold a worker in the limiter."""
        ...

    def list_alerts(self, since: datetime, until: datetime) -> Iterator[Alert]:
        """Alerts whose lastUpdateTime lies in [since, until), with their evidence."""
        ...

    def get_alert(self, alert_id: str) -> Alert:
        """The alert with its evidence and comments."""
        ...

    def get_alerts(self, alert_ids: Sequence[str]) -> list[Alert]:
        """The alerts (with evidence and comments) of these ids that exist, in few calls."""
        ...

    def add_comment(self, alert_id: str, text: str) -> None: ...

    def comment_alerts(self, alert_ids: Sequence[str], text: str) -> None:
        """The same comment on every one of the alerts, in as few calls as the API allows."""
        ...

    def classify_alert(self, alert_id: str, classification: str, determination: str) -> None:
        """Set the alert's classification and determination (an idempotent PATCH)."""
        ...

    def get_machine(self, machine_id: str) -> Machine: ...

    def get_machines(self, machine_ids: Sequence[str]) -> list[Machine]:
        """The machines of these ids that Defender knows, in few calls (an unknown one is absent)."""
        ...

    def list_actions(self, machine_id: str) -> list[LiveResponseAction]:
        """The machine's machine actions, for finding one by the nonce in its comment."""
        ...

    def get_action(self, action_id: str) -> LiveResponseAction: ...

    def cancel_action(self, action_id: str, comment: str) -> None: ...

    def run_live_response(self, machine_id: str, commands: Sequence[Command], comment: str) -> LiveResponseAction: ...

    def stream_file(self, action_id: str, index: int, *, max_bytes: int) -> AbstractContextManager[Iterator[bytes]]:
        """The file GetFile command `index` fetched, un-gzipped, as chunks read as consumed."""
        ...

    def script_output(self, action_id: str, index: int) -> str:
        """What RunScript command `index` printed."""
        ...

    def ensure_library_file(self, name: str, content: bytes, *, description: str, parameters_description: str) -> None:
        """Upload `name` to the live response library unless an identical copy is there."""
        ...

    def import_indicators(self, indicators: Sequence[Indicator]) -> list[ImportResult]:
        """Create or update (same value and type) at most 500 indicators in one call."""
        ...

    def find_indicators(self, values: Sequence[str]) -> list[ExistingIndicator]:
        """The active indicators whose value is one of `values` (a targeted lookup, never the list)."""
        ...

    def own_indicators(self) -> list[ExistingIndicator]:
        """The active indicators this connector created (`application` names it)."""
        ...

    def count_indicators(self) -> int:
        """How many active indicators the tenant holds (as far as the app may see)."""
        ...

    def delete_indicators(self, ids: Sequence[str]) -> None:
        """Withdraw indicators by id, at most 500 per call."""
        ...


class IncidentPort(Protocol):
    """Defender XDR incidents (through Graph, whichever the alert source). Raises
    `joedefender.domain.errors` types."""

    def get_incident(self, incident_id: str) -> Incident:
        """The incident with its tags and comments: what a retried comment step reads back."""
        ...

    def comment_incident(self, incident_id: str, text: str) -> None:
        """Add a comment; not repeated on an uncertain outcome (`Transient(maybe_applied=True)`):
        look at `get_incident(...).comments` first."""
        ...

    def tag_incident(self, incident_id: str, tag: str) -> Incident:
        """Make `tag` our only tag on the incident (`domain.incidents.with_verdict_tag`): others'
        tags stay; no write when it is so already. The incident as it is afterwards."""
        ...


class SandboxPort(Protocol):
    """Joe Sandbox. Raises `joedefender.domain.errors` types."""

    def lookup(self, sha256: str) -> tuple[Verdict, ...]:
        """Every finished, readable analysis of exactly this file, the most relevant first."""
        ...

    def lookup_url(self, url: str) -> tuple[Verdict, ...]:
        """Every finished analysis of exactly this URL, the most relevant first."""
        ...

    def submit_file(
        self,
        stream: BinaryIO,
        filename: str,
        *,
        tags: Sequence[str],
        comments: str | None,
        platform: Platform | None = None,
    ) -> str:
        """Submit the bytes; returns the submission id. `platform`: the device the sample came
        from (None: Windows), which chooses the analysis systems (JoeSandboxSystems[Linux|MacOS])."""
        ...

    def submit_url(self, url: str, *, tags: Sequence[str], comments: str | None) -> str: ...

    def submission_info(self, submission_id: str) -> SubmissionStatus: ...

    def verdict(self, webid: str) -> Verdict: ...

    def find_analysis(self, marker: str) -> str | None:
        """The webid of an analysis whose comments carry `marker`: how a retried step finds the
        submission a crash kept it from recording."""
        ...

    def analysis_status(self, webid: str) -> str: ...

    def iocs(self, webid: str) -> IocSet:
        """The analysis' indicators, each with Joe's own malicious flag."""
        ...


# --- storage ---------------------------------------------------------------------------------


class StoreError(JoeDefenderError):
    """The store could not do what was asked."""


class VersionConflict(StoreError):
    """Optimistic concurrency lost: someone else changed the document first; re-read and retry."""

    def __init__(self, kind: str, key: str, version: int) -> None:
        self.kind = kind
        self.key = key
        self.version = version
        super().__init__(f"{kind} {key!r} is no longer at version {version}: someone else updated it")


class AlreadyExists(VersionConflict):
    """A unit of work created a document that someone else created first."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(kind, key, 0)
        self.args = (f"{kind} {key!r} exists already: someone else created it",)


class StoreUnavailable(StoreError):
    """The backing store is locked, busy or unreachable; the operation did not happen and may be retried."""


class LeaseLost(StoreError):
    """The work item's claim is no longer ours (it expired and another claim took it, or it was
    completed or rescheduled): a fenced unit of work applied nothing, and the step must stop,
    since its next owner runs it again and finds whatever this one did by looking at the world."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"the lease on work item {key!r} is lost: another claim owns it now")


class SchemaVersionError(StoreError):
    """The database was written by a newer joedefender, whose schema this version does not know."""


@dataclass(frozen=True, slots=True)
class Document:
    """One versioned JSON record; `version` is what `update` checks against."""

    kind: str
    key: str
    version: int
    data: dict[str, Any]
    updated_at: float


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A claimed (or, from `items`, queued) unit of work.

    `token` identifies the claim: opaque, unique per successful `claim`, kept by `renew`; empty
    for an item no claim holds. `complete`, `reschedule`, `renew` and a fenced unit of work act
    only while the stored token is still this one. `failures` is the item's count of
    consecutive failed steps, as the last `reschedule` left it (`attempts` counts every claim).
    """

    key: str
    due_at: float
    attempts: int
    owner: str
    lease_until: float
    generation: int
    token: str
    failures: int = 0


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One step a subject (a job) went through, for `status` and for the analyst."""

    subject: str
    at: float
    step: str
    outcome: str
    detail: str


class UnitOfWork(Protocol):
    """A step's writes, collected and then applied together by `commit`, or not at all.

    Nothing is visible to anyone (this unit of work included) before `commit`. Conflicts are
    found at commit: a `create` of a key that exists raises `AlreadyExists`, an `update` of a
    document that changed since it was read raises `VersionConflict`, and then nothing of the
    unit of work is applied. On a store whose documents and queue cannot share a transaction,
    the adapter keeps an outbox beside the documents and relays it.
    """

    def create(self, kind: str, key: str, data: dict[str, Any]) -> None: ...

    def update(self, doc: Document, data: dict[str, Any]) -> None: ...

    def append_history(self, subject: str, step: str, outcome: str, detail: str = "", at: float | None = None) -> None:
        """Record a step; `at` defaults to the store's clock."""
        ...

    def enqueue(self, key: str, due_at: float) -> None:
        """As `WorkQueue.enqueue`, when the unit of work commits."""
        ...

    def fence(self, item: WorkItem) -> None:
        """Make the commit conditional on the claim: it also checks, atomically with its writes,
        that the stored claim token of `item.key` is still `item.token`, and if not raises
        `LeaseLost` and applies nothing. A lease that ran out but that nobody claimed since
        still holds (as for `complete`)."""
        ...

    def commit(self) -> Mapping[tuple[str, str], Document]:
        """Apply everything atomically; the documents written, by (kind, key), at their new versions."""
        ...


class StateStore(Protocol):
    """Versioned JSON documents and an append-only step history."""

    def unit_of_work(self) -> UnitOfWork:
        """A new, empty unit of work on this store."""
        ...

    def get(self, kind: str, key: str) -> Document | None:
        """The document, or None if there is none."""
        ...

    def create(self, kind: str, key: str, data: dict[str, Any]) -> Document | None:
        """Create at version 1 now; None if it already exists (exactly one of racing creators wins)."""
        ...

    def update(self, doc: Document, data: dict[str, Any]) -> Document:
        """Replace the data now if the stored version is still `doc.version`, else raise VersionConflict."""
        ...

    def list(self, kind: str, prefix: str = "") -> builtins.list[Document]:
        """The documents of a kind whose key starts with `prefix`, in key order."""
        ...

    def append_history(self, subject: str, step: str, outcome: str, detail: str = "", at: float | None = None) -> None:
        """Record a step now; `at` defaults to the store's clock."""
        ...

    def history(self, subject: str) -> builtins.list[HistoryEntry]:
        """The subject's steps in time order (ties in the order they were appended)."""
        ...


class WorkQueue(Protocol):
    """Keys due at a time, taken by workers under an expiring lease so a crash loses nothing."""

    def enqueue(self, key: str, due_at: float) -> None:
        """Add the key, or move an existing one earlier (never later) and bump its generation.

        A lease held on the key stays held: the holder's `complete` or `reschedule` then sees
        the new generation and keeps the item due at the enqueued time.
        """
        ...

    def claim(self, owner: str, now: float, lease_seconds: float) -> WorkItem | None:
        """Atomically lease the earliest item that is due and free (or whose lease expired)."""
        ...

    def renew(self, item: WorkItem, now: float, lease_seconds: float) -> WorkItem | None:
        """Extend the lease to `now + lease_seconds` while this claim (the same `token`) still
        holds the item: the item with its new `lease_until` (and the same token); None if the
        lease was lost (another claim took it, or it was completed or rescheduled).

        A step that runs longer than its lease renews it as it goes, so no other worker takes it.
        """
        ...

    def reschedule(self, item: WorkItem, due_at: float, failures: int = 0) -> None:
        """Release the lease and make the item due at `due_at` (or earlier, if re-enqueued since),
        with `failures` consecutive failed steps so far (0: this step did not fail).

        A no-op if the lease was lost, that is if another claim took the item since.
        """
        ...

    def complete(self, item: WorkItem) -> None:
        """Delete the item, unless re-enqueued since the claim: then only release the lease.

        A no-op if the lease was lost.
        """
        ...

    def next_due(self) -> float | None:
        """The earliest time at which `claim` could return an item; None if the queue is empty.

        That is the due time of a free item, or the lease expiry of a leased one (an item is
        never handed out while its lease runs), so a worker can sleep until then.
        """
        ...

    def pending(self) -> int:
        """How many items are in the queue, leased or not."""
        ...

    def items(self) -> builtins.list[WorkItem]:
        """Every item in the order it will be claimed; a leased item shows its lease expiry as due."""
        ...


class MachineLeases(Protocol):
    """One live response per machine, and the tenant's cap on concurrent live response sessions."""

    def acquire(self, machine_id: str, owner: str, now: float, until: float, max_active: int) -> bool:
        """Take (or, if `owner` holds it, extend) the machine's lease, as one check-and-set.

        False if another owner holds an unexpired lease on it, or if taking it would make more
        than `max_active` unexpired leases.
        """
        ...

    def release(self, machine_id: str, owner: str) -> None:
        """Give the lease back; only the owner's own lease is released."""
        ...

    def holder(self, machine_id: str, now: float) -> str | None:
        """Who holds an unexpired lease on the machine, if anyone."""
        ...

    def active(self, now: float) -> int:
        """How many unexpired machine leases exist."""
        ...


class Store(StateStore, WorkQueue, MachineLeases, Protocol):
    """Everything the workflow needs from its storage, as one adapter provides it."""

    def close(self) -> None:
        """Release the adapter's connections; the store is not used afterwards."""
        ...
