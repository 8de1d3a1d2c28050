"""The OData options `GET /security/alerts_v2` takes (GD `api/security-list-alerts_v2.md`): `$count`,
`$filter`, `$skip`, `$top`, and paging by `@odata.nextLink`.

`$filter` works on the documented properties only: assignedTo, classification, determination,
createdDateTime, lastUpdateDateTime, severity, serviceSource, status. `detectionSource` is not
among them and is refused, as are other options (`$orderby`, `$expand`, ...) the page does not list.

docs silent, so ours: the order (newest `createdDateTime` first: "the most recent alerts are
displayed at the top of the list"), the page size without `$top` and the largest `$top` (a larger
one is shortened silently to it, with a nextLink when more match), and the nextLink's form (an
opaque `$skiptoken`; a client follows the link as given).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from joedefender_emulators.graph.common import bad_request
from joedefender_emulators.http import ApiError
from joedefender_emulators.mde.common import parse_time
from joedefender_emulators.mde.odata import Kind, Predicate, fields, parse_filter

FILTERABLE = {
    **fields(Kind.DATETIME, "createdDateTime", "lastUpdateDateTime"),
    **fields(Kind.STRING, "assignedTo", "classification", "determination", "severity", "serviceSource", "status"),
}
_OPTIONS = ("$count", "$filter", "$skip", "$top", "$skiptoken")


@dataclass(frozen=True)
class ListQuery:
    predicate: Predicate | None
    top: int
    skip: int
    count: bool
    params: dict[str, str]  # the client's options, to repeat in the nextLink


def parse_list_query(query: Mapping[str, str], *, default_top: int, max_top: int) -> ListQuery:
    options: dict[str, str] = {}
    for key, value in query.items():
        if key.lower() not in _OPTIONS:
            if key.startswith("$"):
                raise bad_request(f"Query option '{key}' is not allowed. Allowed: $count, $filter, $skip, $top.")
            continue
        options[key.lower()] = value
    predicate = None
    if "$filter" in options:
        try:
            predicate = parse_filter(options["$filter"], FILTERABLE)
        except ApiError as exc:
            raise bad_request(f"Invalid filter clause: {exc.message}") from None
    top = min(_whole(options, "$top", default_top), max_top)
    if top == 0:
        raise bad_request("Invalid value for '$top': it must be at least 1.")
    skip = _whole(options, "$skip", 0) + _skiptoken(options.get("$skiptoken"))
    count = options.get("$count", "false").lower()
    if count not in ("true", "false"):
        raise bad_request(f"Invalid value for '$count': '{count[:20]}' is not true or false.")
    params = {k: v for k, v in query.items() if k.lower() in ("$count", "$filter", "$top")}
    return ListQuery(predicate, top, skip, count == "true", params)


def _whole(options: Mapping[str, str], name: str, default: int) -> int:
    raw = options.get(name)
    if raw is None:
        return default
    if not raw.strip().isdigit() or len(raw.strip()) > 9:
        raise bad_request(f"Invalid value for '{name}': '{raw[:20]}' is not a non-negative integer.")
    return int(raw)


def _skiptoken(token: str | None) -> int:
    if token is None:
        return 0
    try:
        skip = json.loads(base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4)))["skip"]
    except (ValueError, KeyError, TypeError, UnicodeEncodeError, binascii.Error):
        raise bad_request("The $skiptoken is not valid: follow @odata.nextLink as given.") from None
    if not isinstance(skip, int) or skip < 0:
        raise bad_request("The $skiptoken is not valid: follow @odata.nextLink as given.")
    return skip


def _newest_first(item: Mapping[str, Any]) -> tuple[float, str]:
    moment = parse_time(item.get("createdDateTime"))
    return (-(moment.timestamp() if moment else float("-inf")), str(item["id"]))


def page(items: Sequence[dict[str, Any]], query: ListQuery, *, url: str, next_link: bool) -> dict[str, Any]:
    """One answer: the selected items, newest first, from `skip`, at most `top`; with a nextLink
    when more follow (and the scenario gives links); `@odata.count` when asked for."""
    selected = sorted((i for i in items if query.predicate is None or query.predicate(i)), key=_newest_first)
    chunk = selected[query.skip : query.skip + query.top]
    body: dict[str, Any] = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#security/alerts_v2"}
    if query.count:
        body["@odata.count"] = len(selected)
    body["value"] = chunk
    following = query.skip + len(chunk)
    if next_link and following < len(selected):
        token = base64.urlsafe_b64encode(json.dumps({"skip": following}).encode()).rstrip(b"=").decode("ascii")
        body["@odata.nextLink"] = f"{url}?{urlencode({**query.params, '$skiptoken': token})}"
    return body
