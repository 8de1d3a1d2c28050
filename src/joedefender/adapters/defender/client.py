"""The Defender for Endpoint operations the connector uses, over the retrying, rate-limited transport.

One client may be shared by all threads of a process: the limiter and the token cache are locked
and httpx clients are thread-safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from joedefender.adapters.defender._stream import CHUNK, capped, gunzipped, too_large
from joedefender.adapters.defender._transport import DEFAULT_TIMEOUT, Transport, raw_chunks
from joedefender.adapters.defender.auth import TokenProvider
from joedefender.adapters.defender.errors import InvalidResponseError
from joedefender.adapters.defender.limiter import Family, Limiter, RateLimiter
from joedefender.adapters.defender.models import (
    Alert,
    Indicator,
    IndicatorImportResult,
    IndicatorSpec,
    LibraryFile,
    LiveResponseCommand,
    Machine,
    MachineAction,
    ScriptResult,
    format_time,
)
from joedefender.domain.retry import RetryPolicy

_M = TypeVar("_M", bound=BaseModel)

MAX_PAGE_SIZE = 10_000
INDICATOR_BATCH = 500
DEFAULT_PAGE_SIZE = 1000
SCRIPT_RESULT_MAX_BYTES = 16 << 20
# The defaults of DefenderApiMaxRetry (5) and DefenderApiRetryTimeout (5 minutes); full jitter, so
# the many workers that one outage failed together do not come back together.
DEFAULT_RETRY = RetryPolicy(max_retries=5, budget=300.0, first=1.0, cap=60.0, jitter="full")


def odata_string(value: str) -> str:
    """An OData string literal: single-quoted, inner quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def _any_of(field: str, values: Iterable[str]) -> str | None:
    literals = [f"{field} eq {odata_string(v)}" for v in dict.fromkeys(values)]
    if not literals:
        return None
    return literals[0] if len(literals) == 1 else "(" + " or ".join(literals) + ")"


def _segment(value: str) -> str:
    """One path segment; ids come from Defender or alert payloads, so nothing may escape the path."""
    if not value:
        raise ValueError("an id must not be empty")
    return quote(value, safe="")


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class DefenderClient:
    """Alerts, machines, live response, library and indicators of one Defender tenant.

    Built as Azure SDK clients are: the endpoint, a credential (the token provider) and options;
    `joedefender.bootstrap.defender_client` builds one from the settings.
    """

    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        *,
        ca_bundle: Path | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        limiter: Limiter | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`sleep` is how the client waits before a retry (bootstrap passes one that ends early
        when the step waiting lost its work item's lease)."""
        self._tokens = token_provider
        self.limiter: Limiter = limiter if limiter is not None else RateLimiter(sleep=sleep)
        self._transport = Transport(
            base_url,
            token_provider,
            limiter=self.limiter,
            retry=retry,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            ca_bundle=ca_bundle,
            sleep=sleep,
        )
        self._base_url = base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"DefenderClient({self._base_url!r})"

    def __enter__(self) -> DefenderClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()
        self._tokens.close()

    # --- alerts -------------------------------------------------------------------------------------

    def list_alerts(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        time_field: str = "lastUpdateTime",
        statuses: Iterable[str] = (),
        severities: Iterable[str] = (),
        detection_sources: Iterable[str] = (),
        expand_evidence: bool = True,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[Alert]:
        """Alerts whose `time_field` lies in [since, until), paged with `$top`/`$skip`.

        The window's end is fixed when iteration starts (now, when not given) so later alerts
        cannot shift the pages; an alert updated meanwhile leaves this window and lands in the
        next one. Alerts seen on an earlier page are not yielded twice.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{MAX_PAGE_SIZE}")
        end = until if until is not None else datetime.now(UTC)
        clauses = [f"{time_field} ge {format_time(since)}", f"{time_field} lt {format_time(end)}"]
        for field, values in (
            ("status", statuses),
            ("severity", severities),
            ("detectionSource", detection_sources),
        ):
            clause = _any_of(field, values)
            if clause is not None:
                clauses.append(clause)
        params = {"$filter": " and ".join(clauses)}
        if expand_evidence:
            params["$expand"] = "evidence"
        seen: set[str] = set()
        for alert in self._paged(
            "/api/alerts",
            params,
            model=Alert,
            family=Family.ALERTS,
            operation="list_alerts",
            page_size=page_size,
        ):
            if alert.id not in seen:
                seen.add(alert.id)
                yield alert

    def get_alert(self, alert_id: str) -> Alert:
        response = self._get(f"/api/alerts/{_segment(alert_id)}", Family.ALERTS, "get_alert")
        return self._model(response, Alert, "get_alert")

    def add_comment(self, alert_id: str, text: str) -> Alert:
        """Add a comment; not repeated on an ambiguous timeout (look at the alert's comments first)."""
        return self.update_alert(alert_id, comment=text)

    def update_alert(
        self,
        alert_id: str,
        *,
        status: str | None = None,
        classification: str | None = None,
        determination: str | None = None,
        assigned_to: str | None = None,
        comment: str | None = None,
    ) -> Alert:
        body = {
            key: value
            for key, value in (
                ("status", status),
                ("classification", classification),
                ("determination", determination),
                ("assignedTo", assigned_to),
                ("comment", comment),
            )
            if value is not None
        }
        if not body:
            raise ValueError("update_alert needs at least one change")
        response = self._transport.request(
            "PATCH",
            f"/api/alerts/{_segment(alert_id)}",
            family=Family.ALERTS,
            operation="update_alert",
            json=body,
            idempotent=comment is None,
        )
        return self._model(response, Alert, "update_alert")

    # --- machines and machine actions ---------------------------------------------------------------

    def get_machine(self, machine_id: str) -> Machine:
        response = self._get(f"/api/machines/{_segment(machine_id)}", Family.MACHINES, "get_machine")
        return self._model(response, Machine, "get_machine")

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
        response = self._get(f"/api/machineactions/{_segment(action_id)}", Family.MACHINE_ACTIONS, "get_machine_action")
        return self._model(response, MachineAction, "get_machine_action")

    def cancel_machine_action(self, action_id: str, comment: str) -> MachineAction:
        response = self._transport.request(
            "POST",
            f"/api/machineactions/{_segment(action_id)}/cancel",
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
            f"/api/machines/{_segment(machine_id)}/runliveresponse",
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
            f"/api/machineactions/{_segment(action_id)}/GetLiveResponseResultDownloadLink(index={int(index)})",
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
                f"the script result is not its JSON: {_short(exc)}", operation=operation
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
            f"/api/libraryfiles/{_segment(name)}",
            family=Family.LIBRARY,
            operation="delete_library_file",
            ok=(200, 204),
        )

    # --- indicators ---------------------------------------------------------------------------------

    def import_indicators(self, specs: Sequence[IndicatorSpec]) -> list[IndicatorImportResult]:
        """Submit (create or update) indicators, at most 500 per call as Defender demands."""
        results: list[IndicatorImportResult] = []
        for batch in _batches(specs, INDICATOR_BATCH):
            response = self._transport.request(
                "POST",
                "/api/indicators/import",
                family=Family.INDICATORS_IMPORT,
                operation="import_indicators",
                json={"Indicators": [spec.to_api() for spec in batch]},
            )
            results += self._values(response, IndicatorImportResult, "import_indicators")
        return results

    def list_indicators(
        self,
        *,
        value: str | None = None,
        type: str | None = None,
        title: str | None = None,
        created_by: str | None = None,
        application: str | None = None,
        values: Sequence[str] = (),
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> list[Indicator]:
        """Active indicators matching every given field; `values` is a targeted lookup of several
        values at once (`indicatorValue eq 'a' or indicatorValue eq 'b'`)."""
        clauses = [
            f"{field} eq {odata_string(item)}"
            for field, item in (
                ("indicatorValue", value),
                ("indicatorType", type),
                ("title", title),
                ("createdBy", created_by),
                ("application", application),
            )
            if item is not None
        ]
        if values:
            clauses.append("(" + " or ".join(f"indicatorValue eq {odata_string(v)}" for v in values) + ")")
        params = {"$filter": " and ".join(clauses)} if clauses else {}
        return list(
            self._paged(
                "/api/indicators",
                params,
                model=Indicator,
                family=Family.INDICATORS,
                operation="list_indicators",
                page_size=page_size,
            )
        )

    def delete_indicator(self, indicator_id: str) -> None:
        self._transport.request(
            "DELETE",
            f"/api/indicators/{_segment(str(indicator_id))}",
            family=Family.INDICATORS,
            operation="delete_indicator",
            ok=(200, 204),
        )

    def batch_delete_indicators(self, ids: Sequence[str]) -> None:
        """Delete indicators by id, at most 500 per call; NotFoundError when one of a batch is gone."""
        for batch in _batches([str(i) for i in ids], INDICATOR_BATCH):
            self._transport.request(
                "POST",
                "/api/indicators/BatchDelete",
                family=Family.INDICATORS_BATCH_DELETE,
                operation="batch_delete_indicators",
                json={"IndicatorIds": list(batch)},
                ok=(200, 204),
            )

    # --- plumbing -----------------------------------------------------------------------------------

    def _get(self, path: str, family: Family, operation: str, params: dict[str, str] | None = None) -> httpx.Response:
        return self._transport.request("GET", path, family=family, operation=operation, params=params)

    def _paged(
        self,
        path: str,
        params: dict[str, str],
        *,
        model: type[_M],
        family: Family,
        operation: str,
        page_size: int,
    ) -> Iterator[_M]:
        skip = 0
        while True:
            page = {**params, "$top": str(page_size), "$skip": str(skip)}
            items = self._values(self._get(path, family, operation, page), model, operation)
            yield from items
            if len(items) < page_size:
                return
            skip += len(items)

    def _json(self, response: httpx.Response, operation: str) -> dict[str, Any]:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidResponseError(f"the answer is not JSON: {_short(exc)}", operation=operation) from None
        if not isinstance(body, dict):
            raise InvalidResponseError("the answer is not a JSON object", operation=operation)
        return body

    def _model(self, response: httpx.Response, model: type[_M], operation: str) -> _M:
        try:
            return model.model_validate(self._json(response, operation))
        except ValidationError as exc:
            raise InvalidResponseError(
                f"the answer is not a {model.__name__}: {_short(exc)}", operation=operation
            ) from None

    def _values(self, response: httpx.Response, model: type[_M], operation: str) -> list[_M]:
        values = self._json(response, operation).get("value")
        if not isinstance(values, list):
            raise InvalidResponseError("the answer has no 'value' list", operation=operation)
        try:
            return [model.model_validate(item) for item in values]
        except ValidationError as exc:
            raise InvalidResponseError(
                f"an item is not a {model.__name__}: {_short(exc)}", operation=operation
            ) from None


def _short(exc: Exception) -> str:
    """A one-line reason, without the offending input (it may be long, or a sample's bytes)."""
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
