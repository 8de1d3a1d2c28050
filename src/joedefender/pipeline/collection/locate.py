"""The read-only locator ("locate"), safest of the quarantine strategies: nothing is decoded,
restored or written on the endpoint.

Two actions in the common case. `locate`: the locator script (plain PowerShell, works under
Constrained Language Mode) lists the quarantine's Entries and encrypted ResourceData files and
prints the Entries files themselves (`endpoint.locate_contract`), read here to find the
ResourceData files of the evidence's path (or, when it has none, its file name). `fetch`: GetFile
of those, or, when no entry names the evidence, of the newest listed; each is decoded here and
the one that hashes to the evidence is the sample. Only when no printed entry names the evidence
and some Entries files came without their bytes (too large, or unreadable to the script) does a
stage come between: `entries`, GetFile of those Entries files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import ClassVar

from joedefender.domain.errors import NotFound, QuarantineFormatError, Rejected
from joedefender.domain.jobs import Attempt
from joedefender.domain.liveresponse import ActionStatus, Command, LiveResponseAction
from joedefender.domain.platforms import Platform
from joedefender.domain.reasons import Cause, Reason
from joedefender.endpoint import contract
from joedefender.endpoint.locate_contract import LocatedResource, LocateOutcome
from joedefender.formats.defender_quarantine import (
    MAX_ENTRIES_BYTES,
    QuarantineEntry,
    QuarantineResource,
    decode_resource,
    parse_entries,
)
from joedefender.pipeline.collection.strategy import (
    FETCH_OVERHEAD,
    ActionResults,
    AfterAction,
    CollectionStrategy,
    Deliver,
    Failed,
    LibraryScript,
    NextStage,
    Reach,
    Target,
)

# At most this many ResourceData files are fetched: those the Entries files name for the
# evidence, or else the newest listed that could hold the file.
MAX_FETCHED_ENTRIES = 8
# At most this many Entries files (the newest listed, each at most MAX_ENTRIES_BYTES) are fetched.
MAX_ENTRIES_FILES = 32

LOCATE_SCRIPT = LibraryScript(
    contract.LOCATE_SCRIPT_NAME,
    "joedefender: lists Defender quarantine entries (read-only) for Joe Sandbox analysis",
    "-JobId ID",
)


class Locate(CollectionStrategy):
    name: ClassVar[str] = "locate"
    how: ClassVar[str] = "the read-only locator; the encrypted quarantine entry decoded here"
    reach: ClassVar[Reach] = Reach.QUARANTINE
    platforms: ClassVar[frozenset[Platform]] = frozenset({Platform.WINDOWS})
    detection_sources: ClassVar[frozenset[str] | None] = frozenset({"windowsdefenderav"})
    opt_in: ClassVar[tuple[str, ...]] = ("fetch_quarantined_files",)
    scripts: ClassVar[tuple[LibraryScript, ...]] = (LOCATE_SCRIPT,)
    first_stage: ClassVar[str | None] = "locate"

    def commands(self, target: Target) -> list[Command]:
        attempt = target.attempt
        if attempt.stage == self.first_stage:
            return [Command.run_script(contract.LOCATE_SCRIPT_NAME, contract.format_locate_args(attempt.nonce))]
        return [Command.get_file(path) for path in attempt.fetch_paths]

    def after(self, action: LiveResponseAction, results: ActionResults, target: Target) -> AfterAction:
        stage = target.attempt.stage
        if stage == "entries":  # Entries that cannot be fetched leave the listing to go by
            return _selected(results, target, fetched=action.status == ActionStatus.SUCCEEDED)
        if action.status != ActionStatus.SUCCEEDED:
            return super().after(action, results, target)
        if stage == self.first_stage:
            return _located(results, target)
        return Deliver()

    def sample_results(self, attempt: Attempt) -> list[int]:
        if attempt.delivered_index is not None:
            return [attempt.delivered_index]
        return list(range(len(attempt.fetch_paths)))

    def plain(self, chunks: Iterator[bytes], max_bytes: int) -> Iterator[bytes]:
        return decode_resource(chunks, max_bytes)

    def mismatch(self, sha256: str) -> Cause | None:
        return None  # one of the listed entries, just not the evidence's


def _located(results: ActionResults, target: Target) -> AfterAction:
    """The locator listed the quarantine: GetFile the ResourceData files its printed Entries
    files name for the evidence; or, when none does, its Entries files that came without their
    bytes, or when there are none of those, the newest ResourceData files that could hold the file."""
    try:
        located = LocateOutcome.from_script_output(results.script_output(0))
    except (contract.ContractError, NotFound) as exc:
        return Failed(Cause(reason=Reason.SCRIPT_FAILED, detail=str(exc)[:200]))
    if located.status == "error":
        return Failed(Cause(reason=Reason.SCRIPT_FAILED, detail=located.message))
    limit = target.max_sample_bytes + FETCH_OVERHEAD
    paths = [r.path for r in located.resources if r.size <= limit][:MAX_FETCHED_ENTRIES]
    if not paths:
        return Failed(Cause(reason=Reason.QUARANTINE_NOT_FOUND))
    entries = [e for e in located.entries if e.size <= MAX_ENTRIES_BYTES][:MAX_ENTRIES_FILES]
    printed = [e for e in entries if e.data is not None]
    selected, read = _matching_resources(_printed(printed), target)
    listed = f"{len(located.resources)} quarantine entries and {len(located.entries)} Entries files listed"
    listed += f" ({located.language_mode})"
    if selected:
        note = f"{listed}; entries matched: {read} Entries files read; fetching {len(selected)}"
        return NextStage("fetch", selected, ("located", note))
    unread = [e.path for e in entries if e.data is None]
    if unread:
        note = f"{listed}; {read} Entries files read, none names the evidence; fetching {len(unread)} Entries files"
        return NextStage("entries", unread, ("located", note), listed=paths)
    why = f"{read} of {len(entries)} Entries files read, none names the evidence" if entries else "no Entries files"
    return NextStage("fetch", paths, ("located", f"{listed}; listing fallback ({why}); fetching {len(paths)}"))


def _selected(results: ActionResults, target: Target, *, fetched: bool) -> AfterAction:
    """The Entries files came back (or not): GetFile the ResourceData files of the entries that
    name the evidence, else (none fetched, readable or matching) the newest listed ones."""
    attempt = target.attempt
    selected, read = _matching_resources(_fetched(results, len(attempt.fetch_paths)) if fetched else [], target)
    if selected:
        note = f"entries matched: {read} Entries files read; fetching {len(selected)}"
        return NextStage("fetch", selected, ("selected", note))
    why = f"{read} of {len(attempt.fetch_paths)} Entries files read, none names the evidence"
    note = f"listing fallback ({why if fetched else 'the Entries files could not be fetched'}); "
    note += f"fetching {len(attempt.listed_paths)}"
    return NextStage("fetch", attempt.listed_paths, ("selected", note))


def _printed(entries: list[LocatedResource]) -> Iterator[QuarantineEntry | None]:
    """The Entries files the locator printed, each read (None: damaged)."""
    for entry in entries:
        assert entry.data is not None
        try:
            yield parse_entries(entry.data)
        except QuarantineFormatError:
            yield None


def _fetched(results: ActionResults, count: int) -> Iterator[QuarantineEntry | None]:
    """The Entries files the action fetched, each read (None: damaged, or not there)."""
    for index in range(count):
        try:
            with results.stream(index, max_bytes=MAX_ENTRIES_BYTES) as chunks:
                yield parse_entries(b"".join(chunks))
        except (QuarantineFormatError, NotFound, Rejected):
            yield None  # the others may still name the evidence


def _matching_resources(entries: Iterable[QuarantineEntry | None], target: Target) -> tuple[list[str], int]:
    """The ResourceData paths the Entries files give for the evidence's path (or, when it has
    none, its file name), at most MAX_FETCHED_ENTRIES; and how many Entries files were read."""
    candidate = target.candidate
    name = candidate.file_name or target.job.file_name
    paths: list[str] = []
    read = 0
    for entry in entries:
        if entry is None:
            continue
        read += 1
        for resource in entry.resources:
            if _holds(resource, candidate.path, name, target.max_sample_bytes):
                assert resource.resource_data_path is not None
                paths.append(f"{contract.QUARANTINE_ROOT}\\{resource.resource_data_path}")
    return list(dict.fromkeys(paths))[:MAX_FETCHED_ENTRIES], read


def _holds(resource: QuarantineResource, path: str | None, name: str | None, max_bytes: int) -> bool:
    """Whether an entry's file resource may be the evidence: the same original path, or when the
    evidence has none, the same file name (case-insensitive, as Windows compares them)."""
    if resource.kind != "file" or resource.resource_data_path is None:
        return False
    if resource.size is not None and resource.size > max_bytes:
        return False
    if path:
        return resource.path.casefold() == path.casefold()
    return bool(name) and resource.path.rsplit("\\", 1)[-1].casefold() == (name or "").casefold()
