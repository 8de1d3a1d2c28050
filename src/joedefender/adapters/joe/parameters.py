"""Which analysis parameters Joe Sandbox accepts, and of what kind: jbxapi's `submission_defaults`.

The settings check JoeSandboxAnalysisParameters with these at start (so a typo fails then, not
at the first submission), and the client checks what it is about to send; jbxapi stays an
implementation detail of this adapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import jbxapi

_ECHO_LIMIT = 80


def is_parameter(name: str) -> bool:
    return name in jbxapi.submission_defaults


def is_boolean_parameter(name: str) -> bool:
    """A parameter Joe takes as true or false (jbxapi sends it as 1 or 0)."""
    return is_parameter(name) and jbxapi.submission_defaults[name] is jbxapi.UnsetBool


def unknown_parameters(names: Iterable[str]) -> list[str]:
    """The names Joe does not know, sorted."""
    return sorted(name for name in names if not is_parameter(name))


def parameter_problems(params: Mapping[str, object]) -> list[str]:
    """What Joe would refuse in these parameters, one problem per parameter, in their order.

    A boolean parameter must be a bool; any other must be text, a whole number or a list of texts.
    Unknown names are quoted and cut short (they are echoed into a settings error).
    """
    problems = []
    for key, item in params.items():
        if not is_parameter(key):
            problems.append(f"{_echo(str(key))} is not a Joe Sandbox submission parameter")
        elif is_boolean_parameter(key):
            if not isinstance(item, bool):
                problems.append(f"{key!r} must be true or false")
        elif not (
            isinstance(item, str)
            or (isinstance(item, int) and not isinstance(item, bool))
            or (isinstance(item, list) and all(isinstance(element, str) for element in item))
        ):
            problems.append(f"{key!r} must be text, a whole number or a list of texts")
    return problems


def _echo(text: str) -> str:
    return repr(text if len(text) <= _ECHO_LIMIT else text[:_ECHO_LIMIT] + "...")
