"""What every call to Defender's APIs shares (the MDE API, Graph's security API): OData string
literals, path segments, and reading an answer into a wire model (a bad answer is an
InvalidResponseError, never a crash).

`Answers` is the base of each client's parts; the client builds the transport they go through.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from joedefender.adapters._microsoft.errors import InvalidResponseError
from joedefender.adapters._microsoft.transport import Transport

M = TypeVar("M", bound=BaseModel)


def odata_string(value: str) -> str:
    """An OData string literal: single-quoted, inner quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def segment(value: str) -> str:
    """One path segment; ids come from Defender or alert payloads, so nothing may escape the path."""
    if not value:
        raise ValueError("an id must not be empty")
    return quote(value, safe="")


def utc(value: datetime | None) -> datetime | None:
    """The services write UTC, sometimes without the `Z`; a naive time is UTC, not local."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as the services write and read it (naive means UTC)."""
    instant = (utc(moment) or moment).astimezone(UTC)
    text = instant.strftime("%Y-%m-%dT%H:%M:%S")
    if instant.microsecond:
        text += f".{instant.microsecond:06d}".rstrip("0")
    return text + "Z"


class Answers:
    """Reading answers, over the client's transport."""

    _transport: Transport

    def _get(self, path: str, family: str, operation: str, params: dict[str, str] | None = None) -> httpx.Response:
        return self._transport.request("GET", path, family=family, operation=operation, params=params)

    def _json(self, response: httpx.Response, operation: str) -> dict[str, Any]:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidResponseError(f"the answer is not JSON: {short(exc)}", operation=operation) from None
        if not isinstance(body, dict):
            raise InvalidResponseError("the answer is not a JSON object", operation=operation)
        return body

    def _model(self, response: httpx.Response, model: type[M], operation: str) -> M:
        try:
            return model.model_validate(self._json(response, operation))
        except ValidationError as exc:
            raise InvalidResponseError(
                f"the answer is not a {model.__name__}: {short(exc)}", operation=operation
            ) from None

    def _values(self, response: httpx.Response, model: type[M], operation: str) -> list[M]:
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
