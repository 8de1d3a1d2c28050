"""The small OData subset the MDE list endpoints accept: $filter, $top, $skip and $expand.

Supported: comparisons `field op literal` (eq, ne, gt, ge, lt, le) joined by `and`/`or` with
parentheses. Literals as in the docs: unquoted ISO datetimes, single-quoted strings ('' escapes a
quote), numbers, true/false/null. Anything else is a 400 `ODataError`, never a 500.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from joedefender_emulators.http import ApiError
from joedefender_emulators.mde.common import parse_time

MAX_TOP = 10_000

Item = Mapping[str, Any]
Predicate = Callable[[Item], bool]


class Kind(Enum):
    STRING = "string"
    DATETIME = "datetime"
    NUMBER = "number"
    BOOL = "bool"


@dataclass(frozen=True)
class Field:
    """A filterable property: the key it has in the served JSON and its literal type."""

    key: str
    kind: Kind


def fields(kind: Kind, *keys: str) -> dict[str, Field]:
    return {key: Field(key, kind) for key in keys}


@dataclass(frozen=True)
class Page:
    predicate: Predicate
    top: int | None
    skip: int
    expand: frozenset[str]

    def apply(self, items: Sequence[Item]) -> list[Item]:
        selected = [item for item in items if self.predicate(item)][self.skip :]
        return selected if self.top is None else selected[: self.top]


def odata_error(message: str) -> ApiError:
    return ApiError(400, "ODataError", message)


_KNOWN_OPTIONS = ("$filter", "$top", "$skip", "$expand")


def parse_page(query: Mapping[str, str], filterable: Mapping[str, Field], expandable: Sequence[str] = ()) -> Page:
    """Read the query options of a list request; unknown `$` options are refused, not ignored,
    so a client relying on one (say `$orderby`) learns it at once."""
    for key in query:
        if key.startswith("$") and key.lower() not in _KNOWN_OPTIONS:
            raise odata_error(f"The query option '{key}' is not supported.")
    options = {key.lower(): value for key, value in query.items() if key.startswith("$")}
    text = options.get("$filter")
    predicate = parse_filter(text, filterable) if text is not None else _always
    top = _non_negative(options, "$top")
    if top is not None and top > MAX_TOP:
        raise odata_error(f"The limit of '$top' is {MAX_TOP}; got {top}.")
    skip = _non_negative(options, "$skip") or 0
    expand: set[str] = set()
    if "$expand" in options:
        by_lower = {name.lower(): name for name in expandable}
        for part in options["$expand"].split(","):
            name = by_lower.get(part.strip().lower())
            if name is None:
                raise odata_error(f"Cannot $expand '{part.strip()}' here.")
            expand.add(name)
    return Page(predicate, top, skip, frozenset(expand))


def _always(_: Item) -> bool:
    return True


def _non_negative(options: Mapping[str, str], name: str) -> int | None:
    raw = options.get(name)
    if raw is None:
        return None
    if not re.fullmatch(r"\d{1,9}", raw.strip()):
        raise odata_error(f"Invalid value for '{name}': '{raw}' is not a non-negative integer.")
    return int(raw)


# ---- $filter ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w:-]))
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
_NULL = object()
_MAX_DEPTH = 32


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    position: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise odata_error(f"Syntax error in $filter at position {position}: '{text[position:][:20]}'.")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    return tokens


def parse_filter(text: str, filterable: Mapping[str, Field]) -> Predicate:
    if not text.strip():
        raise odata_error("The $filter expression is empty.")
    parser = _Parser(_tokenize(text), {name.lower(): f for name, f in filterable.items()})
    predicate = parser.expression()
    if not parser.at_end():
        raise odata_error(f"Syntax error in $filter near '{parser.peek_text()}'.")
    return predicate


class _Parser:
    """Recursive descent: or-expression > and-expression > comparison or parenthesised group."""

    def __init__(self, tokens: list[_Token], filterable: Mapping[str, Field]) -> None:
        self._tokens = tokens
        self._index = 0
        self._filterable = filterable
        self._depth = 0

    def at_end(self) -> bool:
        return self._index >= len(self._tokens)

    def peek_text(self) -> str:
        return "" if self.at_end() else self._tokens[self._index].text

    def _next(self, what: str) -> _Token:
        if self.at_end():
            raise odata_error(f"Unexpected end of $filter: expected {what}.")
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _keyword(self, word: str) -> bool:
        if not self.at_end():
            token = self._tokens[self._index]
            if token.kind == "word" and token.text.lower() == word:
                self._index += 1
                return True
        return False

    def expression(self) -> Predicate:
        parts = [self._conjunction()]
        while self._keyword("or"):
            parts.append(self._conjunction())
        return parts[0] if len(parts) == 1 else _any_of(parts)

    def _conjunction(self) -> Predicate:
        parts = [self._primary()]
        while self._keyword("and"):
            parts.append(self._primary())
        return parts[0] if len(parts) == 1 else _all_of(parts)

    def _primary(self) -> Predicate:
        token = self._next("a comparison")
        if token.kind == "lparen":
            self._depth += 1
            if self._depth > _MAX_DEPTH:
                raise odata_error(f"The $filter expression nests parentheses deeper than {_MAX_DEPTH}.")
            inner = self.expression()
            self._depth -= 1
            if self._next("')'").kind != "rparen":
                raise odata_error(f"Expected ')' in $filter at position {token.position}.")
            return inner
        if token.kind != "word":
            raise odata_error(f"Expected a property name in $filter, got '{token.text}'.")
        field = self._filterable.get(token.text.lower())
        if field is None:
            allowed = ", ".join(sorted(f.key for f in self._filterable.values()))
            raise odata_error(f"Cannot filter on '{token.text}'. Filterable properties: {allowed}.")
        op_token = self._next("a comparison operator")
        op = op_token.text.lower()
        if op_token.kind != "word" or op not in _COMPARISONS:
            raise odata_error(f"Expected eq, ne, gt, ge, lt or le after '{token.text}', got '{op_token.text}'.")
        value = self._literal(field)
        if op not in ("eq", "ne") and (value is _NULL or field.kind in (Kind.STRING, Kind.BOOL)):
            raise odata_error(f"The operator '{op}' is not supported for '{field.key}' with this value.")
        return _comparison(field, op, value)

    def _literal(self, field: Field) -> Any:
        token = self._next("a value")
        if token.kind == "word" and token.text == "null":
            return _NULL
        expected = {
            Kind.STRING: "string",
            Kind.DATETIME: "datetime",
            Kind.NUMBER: "number",
            Kind.BOOL: "word",
        }[field.kind]
        if token.kind != expected or (field.kind is Kind.BOOL and token.text not in ("true", "false")):
            raise odata_error(
                f"'{field.key}' is a {field.kind.value}; '{token.text}' is not a {field.kind.value} literal"
                + (" (strings are single-quoted)." if field.kind is Kind.STRING else ".")
            )
        if field.kind is Kind.STRING:
            return token.text[1:-1].replace("''", "'")
        if field.kind is Kind.DATETIME:
            moment = parse_time(token.text)
            if moment is None:
                raise odata_error(f"'{token.text}' is not a valid datetime.")
            return moment
        if field.kind is Kind.NUMBER:
            return float(token.text)
        return token.text == "true"


def _all_of(parts: list[Predicate]) -> Predicate:
    return lambda item: all(part(item) for part in parts)


def _any_of(parts: list[Predicate]) -> Predicate:
    keys = {part.field.key for part in parts if isinstance(part, _StringEquals)}
    if len(keys) == 1 and all(isinstance(part, _StringEquals) for part in parts):
        # `x eq 'a' or x eq 'b' or …` (a lookup of several values): one set lookup per item.
        return _StringIn(parts[0].field, frozenset(part.expected for part in parts))  # type: ignore[attr-defined]
    return lambda item: any(part(item) for part in parts)


class _StringEquals:
    """`field eq 'text'`, compared without regard to case (docs silent; the service's store does)."""

    def __init__(self, field: Field, value: str) -> None:
        self.field = field
        self.expected = value.lower()

    def __call__(self, item: Item) -> bool:
        actual = _coerce(self.field, item.get(self.field.key))
        return actual is not None and str(actual).lower() == self.expected


class _StringIn:
    def __init__(self, field: Field, expected: frozenset[str]) -> None:
        self.field = field
        self.expected = expected

    def __call__(self, item: Item) -> bool:
        actual = _coerce(self.field, item.get(self.field.key))
        return actual is not None and str(actual).lower() in self.expected


def _comparison(field: Field, op: str, value: Any) -> Predicate:
    compare = _COMPARISONS[op]
    if op == "eq" and field.kind is Kind.STRING and isinstance(value, str):
        return _StringEquals(field, value)

    def predicate(item: Item) -> bool:
        actual = _coerce(field, item.get(field.key))
        if value is _NULL:
            return (actual is None) == (op == "eq")
        if actual is None:
            return op == "ne"
        expected = value
        if field.kind is Kind.STRING:
            # docs silent on case: the service's store compares strings case-insensitively.
            actual, expected = str(actual).lower(), str(value).lower()
        try:
            return bool(compare(actual, expected))
        except TypeError:
            return False

    return predicate


def _coerce(field: Field, raw: Any) -> Any:
    if raw is None:
        return None
    if field.kind is Kind.DATETIME:
        return raw if isinstance(raw, datetime) else parse_time(raw)
    if field.kind is Kind.NUMBER:
        try:
            return float(raw)
        except (TypeError, ValueError):
            return None
    if field.kind is Kind.BOOL:
        return bool(raw) if isinstance(raw, bool) else None
    return raw if isinstance(raw, str) else str(raw)
