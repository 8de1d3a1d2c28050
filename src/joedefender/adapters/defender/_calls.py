"""What every MDE API call shares: id filters and paging by `$top`/`$skip`, over the answer
reading both Microsoft API clients share (`joedefender.adapters._microsoft.calls`).

`ApiCalls` is the base of the client's parts (alerts, machines and live response, indicators);
the client builds the transport they all go through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from joedefender.adapters._microsoft.calls import Answers, odata_string, segment, short
from joedefender.adapters.defender.limiter import Family

__all__ = ["ApiCalls", "any_of", "batches", "id_filters", "odata_string", "segment", "short"]

_M = TypeVar("_M", bound=BaseModel)

MAX_PAGE_SIZE = 10_000
# docs silent on the longest URL Defender takes: a filter of `id eq` clauses is kept under this
# many characters (about 45 alert ids), far below the 2,048 that proxies commonly allow for a URL.
MAX_FILTER_CHARS = 1800
DEFAULT_PAGE_SIZE = 1000


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


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ApiCalls(Answers):
    """Paging (`$top`/`$skip`) and reading by ids, over the answer reading all clients share."""

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
