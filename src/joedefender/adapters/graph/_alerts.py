"""alerts_v2: listing by a lastUpdateDateTime window, reading by id, comments and the update.

Listing (GD `api/security-list-alerts_v2.md`): `$filter` on lastUpdateDateTime and serviceSource
(detectionSource is not filterable: the core's filters apply to what comes back), `$top`, `$count`,
and paging by `@odata.nextLink`. Reports say the link can be missing while more alerts match
(learn.microsoft.com/en-us/answers/questions/1611210) and the order is not documented, so a page
without a link counts as the end only when `@odata.count` says nothing more matches (or, without a
count, when the page is short). Otherwise the window is halved by time and each half listed anew,
down to a second, where `$skip` pages through the rest: a time cursor that needs no assumption on
the order. An alert seen twice is yielded once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import httpx

from joedefender.adapters._microsoft.calls import format_time, odata_string, segment
from joedefender.adapters._microsoft.errors import InvalidResponseError, NotFoundError
from joedefender.adapters.graph._calls import FAMILY, GraphCalls
from joedefender.adapters.graph.models import Alert, AlertPage, Comment

ALERTS = "/v1.0/security/alerts_v2"
# docs silent on the largest $top: 100 is what Defender XDR's own incidents API documents.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
SMALLEST_WINDOW = timedelta(seconds=1)
# A listing that needs more calls than this is not converging (a service ignoring the filter, say).
MAX_LIST_CALLS = 2000


def window_filter(since: datetime, until: datetime, service_sources: Iterable[str]) -> str:
    clauses = [f"lastUpdateDateTime ge {format_time(since)}", f"lastUpdateDateTime lt {format_time(until)}"]
    sources = [f"serviceSource eq {odata_string(s)}" for s in dict.fromkeys(service_sources)]
    if sources:
        clauses.append(sources[0] if len(sources) == 1 else "(" + " or ".join(sources) + ")")
    return " and ".join(clauses)


def _complete(first: AlertPage, got: int, *, followed: bool, page_size: int) -> bool:
    """Whether a query's pages (the first, and those its nextLinks led to) hold all it matches:
    as many as `@odata.count` says; without a count, when links led to the end or the first page
    was short."""
    if first.count is not None:
        return got >= first.count
    return followed or len(first.value) < page_size


class AlertCalls(GraphCalls):
    _base_url: str

    def list_alerts(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        service_sources: Iterable[str] = (),
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[Alert]:
        """Alerts whose lastUpdateDateTime lies in [since, until) (until: now, fixed when iteration
        starts), of these service sources (all when none), with their evidence; each once."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{MAX_PAGE_SIZE}")
        end = until if until is not None else datetime.now(UTC)
        listing = _Listing(self, tuple(service_sources), page_size)
        seen: set[str] = set()
        for alert in listing.window(since, end):
            if alert.id not in seen:
                seen.add(alert.id)
                yield alert

    def get_alert(self, alert_id: str) -> Alert:
        response = self._get(f"{ALERTS}/{segment(alert_id)}", FAMILY, "get_alert")
        return self._model(response, Alert, "get_alert")

    def get_alerts(self, alert_ids: Iterable[str]) -> Iterator[Alert]:
        """The alerts of these ids that Graph has (an unknown one is absent): one GET each, since
        `id` is not among the documented filters."""
        for alert_id in dict.fromkeys(alert_ids):
            try:
                yield self.get_alert(alert_id)
            except NotFoundError:
                continue

    def add_comment(self, alert_id: str, text: str) -> list[Comment]:
        """POST a comment; Graph answers with the alert's whole comment list. Not repeated on an
        uncertain outcome: read the alert's comments before trying again."""
        return self._post_comment(f"{ALERTS}/{segment(alert_id)}/comments", text, "add_comment")

    def update_alert(
        self,
        alert_id: str,
        *,
        status: str | None = None,
        classification: str | None = None,
        determination: str | None = None,
        assigned_to: str | None = None,
    ) -> Alert:
        """PATCH what Graph lets change (in Graph's values: `inProgress`, `truePositive`, `malware`).
        There is no comment field: comments go through `add_comment`."""
        changes = {"status": status, "classification": classification, "determination": determination}
        body = {key: value for key, value in {**changes, "assignedTo": assigned_to}.items() if value is not None}
        if not body:
            raise ValueError("update_alert needs at least one change")
        path = f"{ALERTS}/{segment(alert_id)}"
        response = self._transport.request("PATCH", path, family=FAMILY, operation="update_alert", json=body)
        return self._model(response, Alert, "update_alert")

    def _alert_page(self, target: str, params: dict[str, str] | None) -> AlertPage:
        response: httpx.Response = self._get(target, FAMILY, "list_alerts", params)
        return self._model(response, AlertPage, "list_alerts")

    def _next_page(self, link: str) -> AlertPage:
        """The page a nextLink names; only on the Graph host this client talks to, so the bearer
        token never goes anywhere else."""
        if not link.startswith(f"{self._base_url}/"):
            raise InvalidResponseError(
                "the @odata.nextLink leads off the Graph host; not followed", operation="list_alerts"
            )
        return self._alert_page(link, None)


class _Listing:
    """One listing's calls: its filter, page size and call budget."""

    def __init__(self, calls: AlertCalls, service_sources: tuple[str, ...], page_size: int) -> None:
        self._calls = calls
        self._sources = service_sources
        self._size = page_size
        self._made = 0

    def _page(self, target: str, params: dict[str, str] | None) -> AlertPage:
        self._made += 1
        if self._made > MAX_LIST_CALLS:
            raise InvalidResponseError(
                f"the listing took more than {MAX_LIST_CALLS} calls without an end", operation="list_alerts"
            )
        if params is None:
            return self._calls._next_page(target)
        return self._calls._alert_page(target, params)

    def window(self, since: datetime, until: datetime) -> Iterator[Alert]:
        params = {"$filter": window_filter(since, until, self._sources), "$top": str(self._size), "$count": "true"}
        first = page = self._page(ALERTS, params)
        yield from page.value
        got = len(page.value)
        while page.next_link is not None:
            page = self._page(page.next_link, None)
            yield from page.value
            got += len(page.value)
        if _complete(first, got, followed=page is not first, page_size=self._size):
            return
        if until - since > SMALLEST_WINDOW:
            middle = since + (until - since) / 2
            yield from self.window(since, middle)
            yield from self.window(middle, until)
            return
        yield from self._skipping(params, len(first.value))

    def _skipping(self, params: dict[str, str], skip: int) -> Iterator[Alert]:
        """The rest of a window too short to halve, by `$skip`."""
        while True:
            page = self._page(ALERTS, {**params, "$skip": str(skip)})
            yield from page.value
            skip += len(page.value)
            if not page.value or (page.count is not None and skip >= page.count):
                return
