"""The page's routes, for any host: a path under the base and the query in, an `Answer` out.

The standalone webhook (Starlette) and the Azure `ui` function both call `serve`, so both show
the same pages with the same headers and the same answers to a bad path or an unknown alert.
Nothing here knows an HTTP framework or checks a secret: each host does that before calling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from joedefender.hosts.page.links import Links
from joedefender.hosts.page.render import CONTENT_TYPE, HEADERS
from joedefender.hosts.page.views import alert_page, jobs_page, missing_page, overview_page
from joedefender.pipeline.facade import InvalidAlertError, Status, validate_alert_id

_STATE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_-")


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=lambda: {**HEADERS, "Content-Type": CONTENT_TYPE})


def serve(status: Status, path: str, query: Mapping[str, str], links: Links) -> Answer:
    """`path` is what follows the base ("", "/jobs", "/alerts/<id>"); the store is read here, so
    a `StoreError` reaches the host, which answers 503."""
    parts = [part for part in path.split("/") if part]
    if not parts:
        return Answer(200, overview_page(status, links))
    if parts == ["jobs"]:
        state = query.get("state") or None
        if state is not None and (len(state) > 40 or not set(state) <= _STATE_CHARS):
            return Answer(400, missing_page(status, links, "the state to list is not a state name"))
        return Answer(200, jobs_page(status, links, state))
    if len(parts) == 2 and parts[0] == "alerts":
        try:
            alert_id = validate_alert_id(parts[1])
        except InvalidAlertError as exc:
            return Answer(400, missing_page(status, links, str(exc)))
        page = alert_page(status, links, alert_id)
        if page is None:
            return Answer(404, missing_page(status, links, f"no alert {alert_id} is known to the connector"))
        return Answer(200, page)
    return Answer(404, missing_page(status, links, "no such page: the overview, /jobs and /alerts/ALERT_ID are"))
