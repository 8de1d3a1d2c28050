"""The Joe Sandbox client: the official jbxapi underneath, typed results and bounded retries on top."""

from __future__ import annotations

import io
import json
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, TypeVar

import jbxapi
import requests
from pydantic import SecretStr

import joedefender
from joedefender.adapters.joe.analyses import (
    detection_of,
    exact_sha256_matches,
    exact_url_matches,
    is_usable,
    most_relevant,
    relevance,
    to_verdict,
)
from joedefender.adapters.joe.errors import JoeRequestError, JoeSandboxError
from joedefender.adapters.joe.iocs import parse_ioc_report
from joedefender.adapters.joe.models import AnalysisRef, JoeAccount, SubmissionStatus
from joedefender.adapters.joe.naming import safe_sample_name
from joedefender.adapters.joe.parameters import unknown_parameters
from joedefender.adapters.joe.retry import DEFAULT_RETRY, call_with_retries
from joedefender.adapters.joe.translate import translate
from joedefender.adapters.joe.upload import CHUNK_SIZE, StreamingJoeSandbox
from joedefender.domain.retry import RetryPolicy
from joedefender.domain.verdicts import IocSet, Verdict

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_REPORT_SPOOL_BYTES = 8 << 20
# What jbxapi raises: its own exceptions, ValueError for unknown parameter names, and requests'
# exceptions should any escape its wrapping.
_JBXAPI_FAILURES = (jbxapi.JoeException, ValueError, requests.RequestException)


class JoeSandboxClient:
    """Thread-safe: each thread gets its own `jbxapi.JoeSandbox` (and so its own requests Session)."""

    def __init__(
        self,
        api_url: str,
        api_key: SecretStr,
        *,
        accept_tac: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        verify_ssl: bool | str = True,
        analysis_parameters: Mapping[str, Any] | None = None,
        systems: Sequence[str] = (),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key
        self._accept_tac = accept_tac
        self._timeout = timeout
        self._retry = retry or DEFAULT_RETRY
        self._verify_ssl = verify_ssl
        self._analysis_parameters = dict(analysis_parameters or {})
        self._systems = tuple(systems)
        self._sleep = sleep
        self._local = threading.local()
        self._instances: list[Any] = []
        self._instances_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JoeSandboxClient(api_url={self.api_url!r}, api_key={self._api_key!r})"

    def __enter__(self) -> JoeSandboxClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's HTTP session; a later call opens new ones."""
        with self._instances_lock:
            joes, self._instances = self._instances, []
        for joe in joes:
            joe.session.close()
        self._local = threading.local()

    # --- server and account ---------------------------------------------------------------------

    def is_online(self) -> bool:
        """False while Joe is in maintenance; unreachable after retries raises JoeUnavailableError."""

        def online(joe: Any) -> Any:
            try:
                return joe.server_online()
            except jbxapi.ServerOfflineError:
                return {"online": False}

        data = self._call("server/online", online)
        return isinstance(data, dict) and data.get("online") is True

    def server_systems(self) -> list[dict[str, Any]]:
        """The server's analysis systems: `name`, `description`, `arch` (WINDOWS, LINUX, MAC, ...)."""
        data = self._call("server/systems", lambda joe: joe.server_systems())
        if not isinstance(data, list):
            raise JoeSandboxError("Joe Sandbox server/systems: the answer is not a list")
        return [item for item in data if isinstance(item, dict) and isinstance(item.get("name"), str)]

    def account(self) -> JoeAccount:
        """The plan and remaining quota (Joe Sandbox Cloud only; on-premise raises JoeRequestError)."""
        data = _mapping(self._call("account/info", lambda joe: joe.account_info()), "account/info")
        quota = _section(data, "quota")
        daily, monthly = _section(quota, "daily"), _section(quota, "monthly")
        return JoeAccount(
            type=str(data.get("type") or ""),
            daily_limit=_int(daily.get("limit")),
            daily_remaining=_int(daily.get("remaining")),
            monthly_limit=_int(monthly.get("limit")),
            monthly_remaining=_int(monthly.get("remaining")),
        )

    # --- lookups --------------------------------------------------------------------------------

    def lookup(self, sha256: str) -> Verdict | None:
        """The most relevant finished, unencrypted analysis of exactly this file, if Joe has one."""
        verdicts = self.lookup_all(sha256)
        return verdicts[0] if verdicts else None

    def lookup_all(self, sha256: str) -> tuple[Verdict, ...]:
        """Every usable analysis of exactly this file, the most relevant first."""
        if not _SHA256.fullmatch(sha256):
            raise JoeRequestError("Joe Sandbox lookup: the query is not a SHA-256 hex digest")
        digest = sha256.lower()
        items = self._search(digest)
        return self._ranked(exact_sha256_matches(items, digest))

    def lookup_url(self, url: str) -> Verdict | None:
        """The most relevant finished analysis of exactly this URL, if Joe has one."""
        ranked = self.lookup_url_all(url)
        return ranked[0] if ranked else None

    def lookup_url_all(self, url: str) -> tuple[Verdict, ...]:
        """Every usable analysis of exactly this URL, the most relevant first."""
        if not url.strip():
            raise JoeRequestError("Joe Sandbox URL lookup: the URL is empty")
        return self._ranked(exact_url_matches(self._search(url), url))

    def _search(self, query: str) -> list[Mapping[str, Any]]:
        data = self._call("analysis/search", lambda joe: joe.analysis_search(query))
        if not isinstance(data, list):
            raise JoeSandboxError("Joe Sandbox analysis/search: the answer is not a list")
        return [item for item in data if isinstance(item, dict)]

    def _ranked(self, items: list[Mapping[str, Any]]) -> tuple[Verdict, ...]:
        usable = sorted((item for item in items if is_usable(item)), key=relevance, reverse=True)
        return tuple(to_verdict(item, self.api_url) for item in usable)

    # --- submissions ----------------------------------------------------------------------------

    def submit_file(
        self,
        stream: IO[bytes],
        filename: str,
        *,
        tags: Sequence[str] = (),
        comments: str | None = None,
        params: Mapping[str, Any] | None = None,
        systems: Sequence[str] | None = None,
    ) -> str:
        """Upload a sample from a seekable stream; the submission id. `systems`: the analysis
        systems for this sample (None: the client's own; empty: the server's default).

        Samples up to one chunk go in a single request, so a crash can never leave Joe holding a
        submission that waits for chunks (which a retry could not find, and would submit again);
        larger ones go in jbxapi's 10 MiB chunks, each streamed from the stream (`upload`).
        Joe is given `filename` reduced to a safe character set, extension kept.
        """
        if not stream.seekable():
            raise JoeRequestError("Joe Sandbox submission: the sample stream must be seekable")
        name = safe_sample_name(filename)
        parameters = self._submission_parameters(tags, comments, params, systems)
        start = stream.tell()
        size = stream.seek(0, io.SEEK_END) - start
        chunked = size > CHUNK_SIZE

        def submit(joe: Any) -> Any:
            stream.seek(start)  # the sample from where the caller positioned the stream
            return joe.submit_sample((name, stream), params=parameters, _chunked_upload=chunked)

        return _submission_id(self._call("submission/new", submit, repeatable=False))

    def submit_url(
        self,
        url: str,
        *,
        tags: Sequence[str] = (),
        comments: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> str:
        """Submit a website for analysis; the submission id."""
        if not url.strip():
            raise JoeRequestError("Joe Sandbox URL submission: the URL is empty")
        parameters = self._submission_parameters(tags, comments, params)
        return _submission_id(
            self._call("submission/new", lambda joe: joe.submit_url(url.strip(), params=parameters), repeatable=False)
        )

    def _submission_parameters(
        self,
        tags: Sequence[str],
        comments: str | None,
        params: Mapping[str, Any] | None,
        systems: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The client's analysis parameters and systems (or the call's), then the call's params,
        tags added and comments set."""
        merged: dict[str, Any] = dict(self._analysis_parameters)
        chosen = self._systems if systems is None else tuple(systems)
        if chosen:
            merged["systems"] = list(chosen)
        merged.update(params or {})
        all_tags = [*_as_list(merged.pop("tags", None)), *tags]
        unique_tags = list(dict.fromkeys(tag.strip() for tag in all_tags if tag.strip()))
        if unique_tags:
            merged["tags"] = unique_tags
        if comments is not None:
            merged["comments"] = comments
        unknown = unknown_parameters(merged)
        if unknown:
            raise JoeRequestError(
                f"Joe Sandbox submission: unknown analysis parameter(s) {', '.join(unknown)}"
                " (check JoeSandboxAnalysisParameters)"
            )
        return merged

    def submission_info(self, submission_id: str) -> SubmissionStatus:
        data = _mapping(
            self._call("submission/info", lambda joe: joe.submission_info(submission_id)), "submission/info"
        )
        items = [item for item in data.get("analyses") or [] if isinstance(item, dict) and item.get("webid")]
        status = str(data.get("status") or "")
        return SubmissionStatus(
            submission_id=str(data.get("submission_id") or submission_id),
            status=status,
            name=str(data["name"]) if data.get("name") else None,
            webid=_relevant_webid(data, items) if status == "finished" else None,
            analyses=tuple(
                AnalysisRef(
                    webid=str(item["webid"]),
                    status=str(item.get("status") or ""),
                    detection=detection_of(item) if item.get("detection") else None,
                    score=_int(item.get("score")),
                )
                for item in items
            ),
        )

    def delete_submission(self, submission_id: str) -> None:
        self._call("submission/delete", lambda joe: joe.submission_delete(submission_id))

    # --- analyses -------------------------------------------------------------------------------

    def verdict(self, webid: str) -> Verdict:
        """The analysis' verdict; check `Verdict.conclusive`, as `unknown` is not one to act on."""
        data = _mapping(self._call("analysis/info", lambda joe: joe.analysis_info(webid)), "analysis/info")
        return to_verdict({**data, "webid": data.get("webid") or webid}, self.api_url)

    def analysis_status(self, webid: str) -> str:
        """`submitted`, `running` or `finished`: for an analysis known only by its webid."""
        data = _mapping(self._call("analysis/info", lambda joe: joe.analysis_info(webid)), "analysis/info")
        return str(data.get("status") or "")

    def find_analysis(self, marker: str) -> str | None:
        """The webid of an analysis whose comments carry `marker` as a whole word, if any.

        How a retried step finds a submission it made but could not record (the marker was sent
        as the comment); an analysis search covers comments.
        """
        if not marker.strip():
            raise JoeRequestError("Joe Sandbox analysis search: the marker is empty")
        whole_word = re.compile(rf"(?<![\w-]){re.escape(marker.strip())}(?![\w-])")
        found = [item for item in self._search(marker.strip()) if whole_word.search(str(item.get("comments") or ""))]
        best = most_relevant(found)
        return str(best["webid"]) if best is not None and best.get("webid") else None

    def iocs(self, webid: str) -> IocSet:
        """Indicators from the `iocjson` report, or the full `jsonfixed` one where iocjson is not offered."""
        try:
            document = self._download_json(webid, "iocjson")
        except JoeRequestError:
            document = self._download_json(webid, "jsonfixed")
        return parse_ioc_report(document)

    def _download_json(self, webid: str, report_type: str) -> Any:
        operation = f"analysis/download ({report_type})"
        with tempfile.SpooledTemporaryFile(max_size=_REPORT_SPOOL_BYTES) as buffer:

            def download(joe: Any) -> Any:
                buffer.seek(0)
                buffer.truncate()
                return joe.analysis_download(webid, report_type, file=buffer)

            self._call(operation, download)
            buffer.seek(0)
            try:
                return json.load(buffer)
            except (ValueError, UnicodeDecodeError):
                raise JoeSandboxError(f"Joe Sandbox {operation}: the report is not JSON") from None

    # --- plumbing -------------------------------------------------------------------------------

    def _joe(self) -> Any:
        joe = getattr(self._local, "joe", None)
        if joe is None:
            joe = StreamingJoeSandbox(
                apikey=self._api_key.get_secret_value(),
                apiurl=self.api_url,
                accept_tac=self._accept_tac,
                timeout=self._timeout,
                verify_ssl=self._verify_ssl,
                retries=1,  # retries are ours (retry.py): bounded, and jbxapi's backoff is not
                user_agent=f"joedefender/{joedefender.__version__}",
            )
            self._local.joe = joe
            with self._instances_lock:
                self._instances.append(joe)
        return joe

    def _call(self, operation: str, action: Callable[[Any], T], *, repeatable: bool = True) -> T:
        """`action` with bounded retries; once only when not `repeatable`: a submission whose answer
        was lost (a 5xx, a dropped connection) may have been made, and sending it again would
        analyse the sample twice. The step retries it later, looking for its marker first."""
        secret = self._api_key.get_secret_value()

        def attempt() -> T:
            try:
                return action(self._joe())
            except _JBXAPI_FAILURES as exc:
                # `from None`: jbxapi's exception (and the server text in it) stays out of tracebacks.
                raise translate(exc, secret, operation) from None

        if not repeatable:
            return attempt()
        return call_with_retries(attempt, self._retry, operation=operation, sleep=self._sleep)


def _mapping(data: Any, operation: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise JoeSandboxError(f"Joe Sandbox {operation}: the answer is not an object")
    return data


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _submission_id(data: Any) -> str:
    if not isinstance(data, dict) or not data.get("submission_id"):
        raise JoeSandboxError("Joe Sandbox submission/new: the answer has no submission_id")
    return str(data["submission_id"])


def _relevant_webid(data: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> str | None:
    chosen = data.get("most_relevant_analysis")
    if isinstance(chosen, dict) and chosen.get("webid"):
        return str(chosen["webid"])
    best = most_relevant(items)
    return str(best["webid"]) if best is not None else None


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return [str(value)]


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value) if isinstance(value, int | str | float) else None
    except ValueError:
        return None
