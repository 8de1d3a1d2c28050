"""A small evaluator of ARM template expressions, for the functions the app settings use.

There is no ARM engine offline; this evaluates `[...]` expressions over given parameter values
with ARM's documented semantics for the functions below, so a test can see the text an app
setting would hold. Any other function (reference, resourceId, ...) raises: a test that needs
one has to say what it stands for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),.]))"
)


def _text(value: Any) -> str:
    """ARM's string(): True/False capitalised, objects and arrays as compact JSON."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _format(template: str, *args: Any) -> str:
    return re.sub(r"\{(\d+)\}", lambda m: _text(args[int(m.group(1))]), template)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "if": lambda condition, yes, no: yes if condition else no,
    "empty": lambda value: len(value) == 0,
    "not": lambda value: not value,
    "string": _text,
    "toLower": lambda value: str(value).lower(),
    "join": lambda items, separator: separator.join(_text(item) for item in items),
    "concat": lambda *parts: "".join(_text(part) for part in parts),
    "format": _format,
}


Functions = Mapping[str, Callable[..., Any]]


def evaluate(value: str, parameters: Mapping[str, Any], stand_ins: Functions | None = None) -> Any:
    """The value of a template string: an expression in brackets, or the literal text.

    `stand_ins` gives the functions a test models (`resourceId`, `listKeys`, ...), each saying in
    the test what it stands for; a call's result may be followed by `.property`."""
    if not (value.startswith("[") and value.endswith("]")) or value.startswith("[["):
        return value
    tokens = [m for m in _TOKEN.finditer(value[1:-1]) if m.group().strip()]
    position, result = _expression(tokens, 0, parameters, {**FUNCTIONS, **(stand_ins or {})})
    if position != len(tokens):
        raise ValueError(f"unexpected text in {value!r}")
    return result


def _expression(
    tokens: list[re.Match[str]], at: int, parameters: Mapping[str, Any], functions: Functions
) -> tuple[int, Any]:
    at, result = _call(tokens, at, parameters, functions)
    while at < len(tokens) and tokens[at]["punct"] == ".":
        result = result[tokens[at + 1]["name"]]
        at += 2
    return at, result


def _call(tokens: list[re.Match[str]], at: int, parameters: Mapping[str, Any], functions: Functions) -> tuple[int, Any]:
    token = tokens[at]
    if token["string"] is not None:
        return at + 1, token["string"][1:-1].replace("''", "'")
    if token["number"] is not None:
        return at + 1, int(token["number"])
    name = token["name"]
    if name is None or tokens[at + 1]["punct"] != "(":
        raise ValueError(f"expected a function call at {token.group()!r}")
    at += 2
    args = []
    while tokens[at]["punct"] != ")":
        at, arg = _expression(tokens, at, parameters, functions)
        args.append(arg)
        if tokens[at]["punct"] == ",":
            at += 1
    if name == "parameters":
        return at + 1, parameters[args[0]]
    if name not in functions:
        raise ValueError(f"{name}() is not evaluated here")
    return at + 1, functions[name](*args)
