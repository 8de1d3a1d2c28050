"""The app's functions as the host indexes them, for the tests and the harness."""

from __future__ import annotations

import json
from typing import Any
from weakref import WeakKeyDictionary

import azure.functions as func

_indexed: WeakKeyDictionary[func.FunctionApp, dict[str, Any]] = WeakKeyDictionary()


def functions_of(app: func.FunctionApp) -> dict[str, Any]:
    """Name -> indexed function; `get_functions` may run once per app (it checks names are unique)."""
    if app not in _indexed:
        _indexed[app] = {str(f.get_function_name()): f for f in app.get_functions()}
    return _indexed[app]


def bindings_of(app: func.FunctionApp) -> dict[str, list[dict[str, Any]]]:
    return {name: json.loads(f.get_function_json())["bindings"] for name, f in functions_of(app).items()}


def call(app: func.FunctionApp, name: str, *args: Any) -> Any:
    """Call the user function as the worker would, with real request/message objects."""
    return functions_of(app)[name].get_user_function()(*args)
