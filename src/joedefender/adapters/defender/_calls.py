"""What every Defender call shares: OData literals and id filters, path segments, paging, and
reading an answer into a wire model (a bad answer is an InvalidResponseError, never a crash).

`ApiCalls` is the base of the client's parts (alerts, machines and live response, indicators);
the client builds the transport they all go through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from joedefender.adapters.defender._transport import Transport
from joedefender.adapters.defender.errors import InvalidResponseError
from joedefender.adapters.defender.limiter import Family

_M = TypeVar("_M", bound=BaseModel)

MAX_PAGE_SIZE = 10_000
# docs silent on the longest URL Defender takes: a filter of `id eq` clauses is kept under this
# many characters (about 45 alert ids), far below the 2,048 that proxies commonly allow for a URL.
MAX_FILTER_CHARS = 1800
DEFAULT_PAGE_SIZE = 1000


def odata_string(value: str) -> str:
    """An OData string literal: single-quoted, inner quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def any_of(field: str, values: Iterable[str]) -> str | None:
    literals = [f"{field} eq {odata_string(v)}" for v in dict.fromkeys(values)]
    if not literals:
        return None
    return literals[0] if len(literals) == 1 else "(" + " or ".join(literals) + ")"


def id_filters(field: str, values: Iterable[str], max_chars: int = MAX_FILTER_CHARS) -> Iterator[list[str]]:
    """The values in groups whose `field eq 'v' or ...` filter stays under `max_chars`. The docs
    list `id` among the filterable alert and machine properties but say nothing of an `in`
    operator, so the groups are `or`-joined `eq` clauses, as the docs' examples combine them."""
    group: list[str] = []
    length = 0
    for value in dict.fromkeys(values):
        clause = len(field) + len(odata_string(value)) + 8  # "x eq 'v'" and " or "
        if group and length + clause > max_chars:
            yield group
            group, length = [], 0
        group.append(value)
        length += clause
    if group:
        yield group


def segment(value: str) -> str:
    """One path segment; ids come from Defender or alert payloads, so nothing may escape the path."""
    if not value:
        raise ValueError("an id must not be empty")
    return quote(value, safe="")


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ApiCalls:
    """Paging and answer reading over the client's transport."""

    _transport: Transport

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

    def _by_ids(
        self,
        path: str,
        ids: Iterable[str],
        extra: dict[str, str],
        *,
        model: type[_M],
        family: Family,
        operation: str,
    ) -> Iterator[_M]:
        """The items of these ids, one list call per group of ids that fits a URL."""
        for group in id_filters("id", ids):
            params = {"$filter": any_of("id", group) or "", **extra}
            size = len(group) + 1  # one page: a full page would ask for the next
            yield from self._paged(path, params, model=model, family=family, operation=operation, page_size=size)

    def _json(self, response: httpx.Response, operation: str) -> dict[str, Any]:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidResponseError(f"the answer is not JSON: {short(exc)}", operation=operation) from None
        if not isinstance(body, dict):
            raise InvalidResponseError("the answer is not a JSON object", operation=operation)
        return body

    def _model(self, response: httpx.Response, model: type[_M], operation: str) -> _M:
        try:
            return model.model_validate(self._json(response, operation))
        except ValidationError as exc:
            raise InvalidResponseError(
                f"the answer is not a {model.__name__}: {short(exc)}", operation=operation
            ) from None

    def _values(self, response: httpx.Response, model: type[_M], operation: str) -> list[_M]:
        values = self._json(response, operation).get("value")
        if not isinstance(values, list):
            raise InvalidResponseError("the answer has no 'value' list", operation=operation)
        try:
            return [model.model_validate(item) for item in values]
        except ValidationError as exc:
            raise InvalidResponseError(
                f"an item is not a {model.__name__}: {short(exc)}", operation=operation
            ) from None


def short(exc: Exception) -> str:
    """A one-line reason, without the offending input (it may be long, or a sample's bytes)."""
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
