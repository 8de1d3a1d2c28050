"""Custom indicators (ti-indicator.md): submit or update, import, list, delete, batch delete."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.http import ApiError
from joedefender_emulators.mde.auth import Caller
from joedefender_emulators.mde.common import check_properties, format_time, json_object, not_found, parse_time
from joedefender_emulators.mde.odata import Field, Kind, Page, fields

MAX_BATCH = 500
TYPES = ("FileSha1", "FileSha256", "FileMd5", "CertificateThumbprint", "IpAddress", "DomainName", "Url")
ACTIONS = ("Warn", "Block", "Audit", "Alert", "AlertAndBlock", "BlockAndRemediate", "Allowed")
SEVERITIES = ("Informational", "Low", "Medium", "High")
REQUIRED = ("indicatorValue", "indicatorType", "action", "title", "description")
OPTIONAL = (
    "application", "expirationTime", "severity", "recommendedActions", "rbacGroupNames", "educateUrl",
    "generateAlert",
)  # fmt: skip
FILTERABLE: dict[str, Field] = {
    **fields(
        Kind.STRING,
        "application", "createdByDisplayName", "title", "indicatorValue", "indicatorType", "createdBy",
        "action", "severity",
    ),
    **fields(Kind.DATETIME, "expirationTime", "creationTimeDateTimeUtc"),
    **fields(Kind.BOOL, "generateAlert"),
}  # fmt: skip

_HEX_LENGTHS = {"FileSha1": 40, "FileSha256": 64, "FileMd5": 32, "CertificateThumbprint": 40}
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+\.?")
# Who created the scenario's own indicators when it does not say: someone in the portal.
_PORTAL_USER = "secops@contoso.com"


def _bad(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def check_value(kind: str, value: str) -> str:
    """The value as stored; raises the documented Invalid* error for a malformed one."""
    if kind in _HEX_LENGTHS:
        if not re.fullmatch(rf"[0-9a-fA-F]{{{_HEX_LENGTHS[kind]}}}", value):
            raise _bad("InvalidHashValue", f"'{value[:100]}' is not a valid {kind} value.")
        return value.lower()
    if kind == "IpAddress":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            hint = " (CIDR ranges are not supported)" if "/" in value else ""
            raise _bad("InvalidIpAddress", f"'{value[:100]}' is not a valid IP address{hint}.") from None
    if kind == "DomainName":
        if len(value) > 253 or not _DOMAIN.fullmatch(value):
            raise _bad("InvalidDomainName", f"'{value[:100]}' is not a valid domain name.")
        return value.lower().rstrip(".")
    # Url: http(s) with a host, or the scheme-less host/path form the portal accepts (docs silent).
    candidate = value if "://" in value else f"http://{value}"
    try:
        parts = urlsplit(candidate)
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in value):
        raise _bad("InvalidUrl", f"'{value[:100]}' is not a valid URL.")
    return value


def _choice(body: Mapping[str, Any], key: str, allowed: Sequence[str]) -> None:
    if key in body and body[key] not in allowed:
        raise _bad("InvalidRequestBody", f"Invalid {key} {str(body[key])[:50]!r}. Allowed: {', '.join(allowed)}.")


def _validate(body: Any, now: datetime) -> dict[str, Any]:
    body = json_object(body)
    check_properties(body, (*REQUIRED, *OPTIONAL), REQUIRED)
    for key in ("indicatorValue", "title", "description"):
        if not isinstance(body[key], str) or not body[key].strip():
            raise _bad("InvalidRequestBody", f"'{key}' must be a non-empty string.")
    for key in ("application", "recommendedActions", "educateUrl"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise _bad("InvalidRequestBody", f"'{key}' must be a string.")
    _choice(body, "indicatorType", TYPES)
    _choice(body, "action", ACTIONS)
    if body.get("severity") is not None:
        _choice(body, "severity", SEVERITIES)
    generate = body.get("generateAlert", False)
    if not isinstance(generate, bool):
        raise _bad("InvalidRequestBody", "'generateAlert' must be true or false.")
    if body["action"] == "Audit" and not generate:
        raise _bad("InvalidRequestBody", "The Audit action requires generateAlert to be true.")
    groups = body.get("rbacGroupNames")
    # Typed "comma-separated String" but the sample sends an array: accept both.
    if isinstance(groups, str):
        groups = [g.strip() for g in groups.split(",") if g.strip()]
    if groups is not None and not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
        raise _bad("InvalidRequestBody", "'rbacGroupNames' must be a list of group names.")
    expiration = None
    if body.get("expirationTime") is not None:
        expiration = parse_time(body["expirationTime"])
        if expiration is None:
            raise _bad("InvalidRequestBody", "'expirationTime' must be an ISO 8601 UTC timestamp.")
        if expiration <= now:
            # docs silent: an indicator that is expired on arrival is refused rather than dropped.
            raise _bad("InvalidRequestBody", "'expirationTime' is in the past.")
    value = check_value(body["indicatorType"], body["indicatorValue"].strip())
    return {
        **body,
        "indicatorValue": value,
        "generateAlert": generate,
        "rbacGroupNames": groups or [],
        "expirationTime": format_time(expiration) if expiration else None,
    }


class IndicatorStore:
    """Callers hold the tenant lock."""

    def __init__(self, seed: Sequence[Mapping[str, Any]], clock: EmulatedClock, max_active: int) -> None:
        self._clock = clock
        self._max_active = max_active
        self._indicators: dict[str, dict[str, Any]] = {}
        self._expiries: dict[str, tuple[Any, datetime | None]] = {}
        self._by_key: dict[tuple[str, str], list[str]] = {}
        self._next_id = 1000
        for raw in seed:
            item = dict(raw)
            item.setdefault("id", self._new_id())
            item["id"] = str(item["id"])
            item.setdefault("createdBy", _PORTAL_USER)
            item.setdefault("sourceType", "User")
            self._indicators[item["id"]] = item
            self._index(item)
            if item["id"].isdigit():
                self._next_id = max(self._next_id, int(item["id"]) + 1)

    def _new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id - 1)

    def _expiry(self, item: Mapping[str, Any]) -> datetime | None:
        """The parsed expirationTime, cached by the text it was parsed from (lists and imports
        look at every indicator; parsing each one each time made a full tenant slow)."""
        text = item.get("expirationTime")
        cached = self._expiries.get(str(item["id"]))
        if cached is not None and cached[0] == text:
            return cached[1]
        parsed = parse_time(text)
        self._expiries[str(item["id"])] = (text, parsed)
        return parsed

    def _active(self, item: Mapping[str, Any]) -> bool:
        expiration = self._expiry(item)
        return expiration is None or expiration > self._clock.now()

    def _find_active(self, kind: str, value: str) -> dict[str, Any] | None:
        """The active indicator of that type and value (case-insensitive), through an index by
        (type, value): a tenant's 15,000 are not scanned for each of an import's 500."""
        for indicator_id in self._by_key.get((kind, value.lower()), ()):
            item = self._indicators.get(indicator_id)
            if item is not None and self._active(item):
                return item
        return None

    def _index(self, item: Mapping[str, Any]) -> None:
        key = (str(item.get("indicatorType")), str(item.get("indicatorValue")).lower())
        self._by_key.setdefault(key, []).append(str(item["id"]))

    def _count_active(self) -> int:
        return sum(1 for i in self._indicators.values() if self._active(i))

    def _visible(self, caller: Caller) -> list[dict[str, Any]]:
        """Active indicators the caller may see: Ti.ReadWrite only sees its own."""
        items = sorted(self._indicators.values(), key=lambda i: (len(i["id"]), i["id"]))
        return [
            i for i in items if self._active(i) and (caller.sees_all_indicators or i.get("createdBy") == caller.app_id)
        ]

    def all(self) -> list[dict[str, Any]]:
        return [dict(i) for i in sorted(self._indicators.values(), key=lambda i: (len(i["id"]), i["id"]))]

    def select(self, page: Page, caller: Caller) -> list[dict[str, Any]]:
        return [dict(i) for i in page.apply(self._visible(caller))]

    def submit(self, body: Any, caller: Caller) -> dict[str, Any]:
        return dict(self._upsert(_validate(body, self._clock.now()), caller))

    def _upsert(self, fields_: dict[str, Any], caller: Caller, active: list[int] | None = None) -> dict[str, Any]:
        """Create or update by type and value; `active` carries an import's running count of active
        indicators (counted once per import, not once per indicator)."""
        stamp = format_time(self._clock.now())
        existing = self._find_active(fields_["indicatorType"], fields_["indicatorValue"].lower())
        if existing is not None:
            # docs silent on updating another app's indicator: the update is applied.
            existing.update({k: v for k, v in fields_.items() if k != "application"})
            existing.update(lastUpdateTime=stamp, lastUpdatedBy=caller.app_id)
            return existing
        if active is None:
            active = [self._count_active()]
        if active[0] >= self._max_active:
            raise _bad(
                "BadRequest",
                f"The tenant has reached its limit of {self._max_active} active indicators; delete some first.",
            )
        item = {
            "id": self._new_id(),
            "indicatorValue": fields_["indicatorValue"],
            "indicatorType": fields_["indicatorType"],
            "action": fields_["action"],
            "application": fields_.get("application"),
            "source": caller.app_id,
            "sourceType": "AadApp",
            "createdBySource": "PublicApi",
            "createdBy": caller.app_id,
            "createdByDisplayName": caller.app_id,
            "lastUpdatedBy": caller.app_id,
            "creationTimeDateTimeUtc": stamp,
            "expirationTime": fields_["expirationTime"],
            "lastUpdateTime": stamp,
            "severity": fields_.get("severity"),
            "title": fields_["title"],
            "description": fields_["description"],
            "recommendedActions": fields_.get("recommendedActions"),
            "rbacGroupNames": fields_["rbacGroupNames"],
            "rbacGroupIds": [],
            "generateAlert": fields_["generateAlert"],
            "externalID": None,
        }
        if fields_.get("educateUrl") is not None:
            item["educateUrl"] = fields_["educateUrl"]
        self._indicators[item["id"]] = item
        self._index(item)
        active[0] += 1
        return item

    def import_batch(self, body: Any, caller: Caller) -> list[dict[str, Any]]:
        body = json_object(body)
        check_properties(body, ("Indicators",), ("Indicators",))
        batch = body["Indicators"]
        if not isinstance(batch, list) or not batch:
            raise _bad("InvalidRequestBody", "'Indicators' must be a non-empty list.")
        if len(batch) > MAX_BATCH:
            raise _bad("MaximumBatchSizeExceeded", f"At most {MAX_BATCH} indicators per import; got {len(batch)}.")
        results = []
        active = [self._count_active()]
        for raw in batch:
            shown = raw.get("indicatorValue") if isinstance(raw, dict) else None
            try:
                item = self._upsert(_validate(raw, self._clock.now()), caller, active)
            except ApiError as exc:
                results.append(
                    {"id": None, "indicator": shown, "isFailed": True, "failureReason": f"{exc.code}: {exc.message}"}
                )
            else:
                results.append(
                    {"id": item["id"], "indicator": item["indicatorValue"], "isFailed": False, "failureReason": None}
                )
        return results

    def delete(self, indicator_id: str, caller: Caller) -> None:
        if indicator_id not in {i["id"] for i in self._visible(caller)}:
            raise not_found(f"Indicator {indicator_id[:50]}")
        del self._indicators[indicator_id]

    def batch_delete(self, body: Any, caller: Caller) -> None:
        body = json_object(body)
        check_properties(body, ("IndicatorIds",), ("IndicatorIds",))
        ids = body["IndicatorIds"]
        if not isinstance(ids, list) or not ids:
            raise _bad("InvalidRequestBody", "'IndicatorIds' must be a non-empty list.")
        if len(ids) > MAX_BATCH:
            raise _bad("MaximumBatchSizeExceeded", f"At most {MAX_BATCH} ids per BatchDelete; got {len(ids)}.")
        wanted = []
        for raw in ids:
            text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
            if not isinstance(text, str) or not text.isdigit():
                raise _bad("InvalidRequestBody", f"Invalid indicator id {str(raw)[:50]!r}.")
            wanted.append(text)
        visible = {i["id"] for i in self._visible(caller)}
        missing = [i for i in wanted if i not in visible]
        if missing:
            raise not_found(f"Indicator(s) {', '.join(missing[:10])}")
        for indicator_id in wanted:
            self._indicators.pop(indicator_id, None)
