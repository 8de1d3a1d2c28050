"""What every MDE answer shares: the error body, OData collections, timestamps and body checks."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from joedefender_emulators.http import ApiError, Request, Response, json_response

# The real service names itself in @odata.context whatever host was called; clients ignore it.
API_ORIGIN = "https://api.securitycenter.microsoft.com"


def render_error(error: ApiError) -> Response:
    """The documented error body; `target` is a fresh correlation id for every answer."""
    body = {"error": {"code": str(error.code), "message": error.message, "target": str(uuid.uuid4())}}
    return json_response(body, error.status, error.headers)


def collection(entity_set: str, items: list[Any]) -> dict[str, Any]:
    return {"@odata.context": f"{API_ORIGIN}/api/$metadata#{entity_set}", "value": items}


def entity(entity_set: str, item: Mapping[str, Any]) -> dict[str, Any]:
    return {"@odata.context": f"{API_ORIGIN}/api/$metadata#{entity_set}/$entity", **item}


def format_time(moment: datetime) -> str:
    """UTC with seven fractional digits, as the service writes its timestamps."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp (any number of fractional digits) as an aware datetime, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def not_found(what: str) -> ApiError:
    return ApiError(404, "ResourceNotFound", f"{what} was not found")


def read_json(request: Request) -> Any:
    """The body as JSON; 400 for anything unparsable, deeply nested bodies included (the shared
    Request.json lets RecursionError through as a 500)."""
    try:
        return request.json()
    except RecursionError:
        raise ApiError(400, "InvalidRequestBody", "The request body is nested too deeply.") from None


def json_object(body: Any) -> dict[str, Any]:
    """The body must be a JSON object: anything else is InvalidRequestBody."""
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidRequestBody", "The request body must be a JSON object.")
    return body


def check_properties(body: Mapping[str, Any], allowed: Iterable[str], required: Iterable[str] = ()) -> None:
    """Property names are case-sensitive: a wrong-case or unknown name is InvalidRequestBody,
    an absent required one MissingRequiredParameter (common-errors.md)."""
    allowed = tuple(allowed)
    by_lower = {name.lower(): name for name in allowed}
    for key in body:
        if key in allowed:
            continue
        hint = by_lower.get(str(key).lower())
        suffix = f" (property names are case-sensitive: did you mean '{hint}'?)" if hint else ""
        raise ApiError(400, "InvalidRequestBody", f"Unknown property '{key}' in the request body{suffix}.")
    missing = [name for name in required if name not in body]
    if missing:
        raise ApiError(400, "MissingRequiredParameter", f"Missing required parameter(s): {', '.join(missing)}.")


def origin(request: Request) -> str:
    """This server as the client reached it: it is its own authority host and blob host."""
    host = request.headers.get("Host") or "127.0.0.1"
    return f"https://{host}"
