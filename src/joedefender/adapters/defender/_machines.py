"""Machines, machine actions and live response: reading machines, finding and cancelling actions,
running live response, streaming GetFile results, script results, and the live response library."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator, Sequence

from pydantic import ValidationError

from joedefender.adapters._microsoft.errors import InvalidResponseError, NotFoundError
from joedefender.adapters._microsoft.transport import raw_chunks
from joedefender.adapters.defender._calls import DEFAULT_PAGE_SIZE, ApiCalls, odata_string, segment, short
from joedefender.adapters.defender._stream import CHUNK, capped, gunzipped, too_large
from joedefender.adapters.defender.limiter import Family
from joedefender.adapters.defender.models import (
    LibraryFile,
    LiveResponseCommand,
    Machine,
    MachineAction,
    ScriptResult,
)

SCRIPT_RESULT_MAX_BYTES = 16 << 20


class MachineCalls(ApiCalls):
    def get_machine(self, machine_id: str) -> Machine:
        response = self._get(f"/api/machines/{segment(machine_id)}", Family.MACHINES, "get_machine")
        return self._model(response, Machine, "get_machine")

    def get_machines(self, machine_ids: Iterable[str]) -> Iterator[Machine]:
        """The machines with these ids, in as few list calls as the URL allows. GET /api/machines
        answers 404 when no machine matches (get-machines.md: "no recent machines"): none then."""
        try:
            yield from self._by_ids(
                "/api/machines", machine_ids, {}, model=Machine, family=Family.MACHINES, operation="get_machines"
            )
        except NotFoundError:
            return

    def list_machine_actions(
        self,
        *,
        machine_id: str | None = None,
        status: str | None = None,
        type: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> list[MachineAction]:
        clauses = [
            f"{field} eq {odata_string(value)}"
            for field, value in (("machineId", machine_id), ("status", status), ("type", type))
            if value is not None
        ]
        params = {"$filter": " and ".join(clauses)} if clauses else {}
        return list(
            self._paged(
                "/api/machineactions",
                params,
                model=MachineAction,
                family=Family.MACHINE_ACTIONS,
                operation="list_machine_actions",
                page_size=page_size,
            )
        )

    def get_machine_action(self, action_id: str) -> MachineAction:
        response = self._get(f"/api/machineactions/{segment(action_id)}", Family.MACHINE_ACTIONS, "get_machine_action")
        return self._model(response, MachineAction, "get_machine_action")

    def cancel_machine_action(self, action_id: str, comment: str) -> MachineAction:
        response = self._transport.request(
            "POST",
            f"/api/machineactions/{segment(action_id)}/cancel",
            family=Family.MACHINE_ACTIONS,
            operation="cancel_machine_action",
            json={"Comment": comment},
        )
        return self._model(response, MachineAction, "cancel_machine_action")

    # --- live response ------------------------------------------------------------------------------

    def run_live_response(
        self, machine_id: str, commands: Sequence[LiveResponseCommand], comment: str
    ) -> MachineAction:
        """Start a live response action (Pending); MachineBusyError when the machine has one already.

        Never repeated after an ambiguous timeout: a second action would find the machine busy
        with the first. Look at the machine's actions before starting again.
        """
        if not commands:
            raise ValueError("a live response needs at least one command")
        response = self._transport.request(
            "POST",
            f"/api/machines/{segment(machine_id)}/runliveresponse",
            family=Family.LIVE_RESPONSE,
            operation="run_live_response",
            json={"Commands": [c.to_api() for c in commands], "Comment": comment},
            ok=(200, 201),
            idempotent=False,
        )
        return self._model(response, MachineAction, "run_live_response")

    def get_result_download_link(self, action_id: str, index: int) -> str:
        """A read-only link to command `index`'s result, valid 30 minutes: fetch one per download."""
        operation = "get_result_download_link"
        response = self._get(
            f"/api/machineactions/{segment(action_id)}/GetLiveResponseResultDownloadLink(index={int(index)})",
            Family.DOWNLOAD_LINK,
            operation,
        )
        value = self._json(response, operation).get("value")
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            raise InvalidResponseError("the answer holds no download link", operation=operation)
        return value

    @contextlib.contextmanager
    def stream_result(self, action_id: str, index: int, *, gunzip: bool, max_bytes: int) -> Iterator[Iterator[bytes]]:
        """Command `index`'s result as chunks, read from the network as they are consumed.

        GetFile results are gzip (`gunzip=True` un-gzips them while streaming); `max_bytes` caps
        the bytes yielded (DownloadTooLargeError beyond it). Use as a context manager so the
        connection is released even when the consumer stops early.
        """
        operation = "stream_result"

        def link() -> str:
            return self.get_result_download_link(action_id, index)

        with self._transport.download(link, operation=operation) as response:
            length = response.headers.get("Content-Length", "")
            if not gunzip and length.isdigit() and int(length) > max_bytes:
                raise too_large(max_bytes, operation)
            raw = raw_chunks(response, operation, CHUNK)
            yield gunzipped(raw, max_bytes, operation) if gunzip else capped(raw, max_bytes, operation)

    def get_script_result(self, action_id: str, index: int) -> ScriptResult:
        """The RunScript result JSON of command `index` (gzip-wrapped or not)."""
        operation = "get_script_result"
        with self.stream_result(action_id, index, gunzip=False, max_bytes=SCRIPT_RESULT_MAX_BYTES) as chunks:
            data = b"".join(chunks)
        if data[:2] == b"\x1f\x8b":
            data = b"".join(gunzipped([data], SCRIPT_RESULT_MAX_BYTES, operation))
        try:
            return ScriptResult.model_validate_json(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValidationError) as exc:
            raise InvalidResponseError(
                f"the script result is not its JSON: {short(exc)}", operation=operation
            ) from None

    # --- live response library ----------------------------------------------------------------------

    def list_library_files(self) -> list[LibraryFile]:
        response = self._get("/api/libraryfiles", Family.LIBRARY, "list_library_files")
        return self._values(response, LibraryFile, "list_library_files")

    def ensure_library_file(
        self, name: str, content: bytes, *, description: str, parameters_description: str = ""
    ) -> LibraryFile:
        """The library's copy of `name`, uploaded only when missing or its sha256 differs."""
        digest = hashlib.sha256(content).hexdigest()
        existing = next(
            (f for f in self.list_library_files() if f.file_name.lower() == name.lower()),
            None,
        )
        if existing is not None and (existing.sha256 or "").lower() == digest:
            return existing
        response = self._transport.request(
            "POST",
            "/api/libraryfiles",
            family=Family.LIBRARY,
            operation="ensure_library_file",
            files={"file": (name, content, "application/octet-stream")},
            data={
                "Description": description,
                "ParametersDescription": parameters_description,
                "HasParameters": "true" if parameters_description else "false",
                "OverrideIfExists": "true" if existing is not None else "false",
            },
        )
        uploaded = self._model(response, LibraryFile, "ensure_library_file")
        if uploaded.sha256 is not None and uploaded.sha256.lower() != digest:
            raise InvalidResponseError(
                f"the library holds sha256 {uploaded.sha256} for {name} after the upload, not {digest}",
                operation="ensure_library_file",
            )
        return uploaded

    def delete_library_file(self, name: str) -> None:
        self._transport.request(
            "DELETE",
            f"/api/libraryfiles/{segment(name)}",
            family=Family.LIBRARY,
            operation="delete_library_file",
            ok=(200, 204),
        )

    # --- indicators ---------------------------------------------------------------------------------
