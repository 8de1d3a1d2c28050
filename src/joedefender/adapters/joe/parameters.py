"""Which analysis parameters Joe Sandbox accepts, and of what kind: jbxapi's `submission_defaults`.

Bootstrap checks JoeSandboxAnalysisParameters with these where it builds this adapter, at start
(so a typo fails then, not at the first submission; loading the settings does not load jbxapi),
and the client checks what it is about to send; jbxapi stays an implementation detail here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

import jbxapi

from joedefender.domain.booleans import parse_boolean

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


def as_joe_takes_them(params: Mapping[str, object]) -> tuple[dict[str, object], list[str]]:
    """The parameters with Joe's true/false ones read as such ("yes" is true), and what Joe would
    refuse in them, one problem per parameter, in their order."""
    taken: dict[str, object] = {}
    for key, given in params.items():
        item = given
        if is_boolean_parameter(key):
            with contextlib.suppress(ValueError):  # else left as given: parameter_problems says why
                item = parse_boolean(given)
        taken[key] = item
    return taken, parameter_problems(taken)


def _echo(text: str) -> str:
    return repr(text if len(text) <= _ECHO_LIMIT else text[:_ECHO_LIMIT] + "...")
