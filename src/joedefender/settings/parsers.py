"""Value parsers: each takes a setting's raw value (text from the environment or a file, or a typed
value when the settings are built in code) and returns the typed value, or raises
ValueError(problem) with a problem that quotes the value (never a secret) and says what is wrong.
"""

import json
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from pydantic import BeforeValidator

from joedefender.domain.booleans import parse_boolean
from joedefender.domain.indicators import ACTIONS as INDICATOR_ACTIONS
from joedefender.domain.indicators import FILE_ONLY_ACTIONS
from joedefender.domain.indicators import SEVERITIES as INDICATOR_SEVERITIES
from joedefender.domain.os_binaries import OsBinaryRuleError, OsBinaryRules

MASK = "**********"
_ECHO_LIMIT = 80
# Parameters the connector sets from its own settings, so they have one place only.
_PARAMETER_OWNERS = {"systems": "JoeSandboxSystems", "accept-tac": "JoeSandboxAcceptTAC"}
# What a Joe Sandbox parameter's value may be in JSON (which of them Joe takes is the Joe adapter's to say).
JoeParameter = str | int | bool | list[str]


def echo(text: str) -> str:
    """Quote a non-secret value for an error message, cut short so a pasted blob stays readable."""
    return repr(text if len(text) <= _ECHO_LIMIT else text[:_ECHO_LIMIT] + "...")


def whole_number(value: object, low: int, high: int, unit: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("is not a whole number")
    if isinstance(value, str):
        if not re.fullmatch(r"[+-]?[0-9]+", value):
            raise ValueError(f"{echo(value)} is not a whole number")
        value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{value} is not between {low} and {high}{unit}")
    return value


def whole(low: int, high: int) -> BeforeValidator:
    return BeforeValidator(lambda value: whole_number(value, low, high))


def optional_whole(low: int, high: int) -> BeforeValidator:
    return BeforeValidator(lambda value: None if value is None else whole_number(value, low, high))


def duration(unit: timedelta, unit_name: str, low: int, high: int) -> BeforeValidator:
    """Whole numbers of `unit` (JoeAz's settings are whole minutes); a timedelta passes if in range."""

    def parse(value: object) -> timedelta:
        if isinstance(value, timedelta):
            if not low * unit <= value <= high * unit:
                raise ValueError(f"{value} is not between {low} and {high} {unit_name}")
            return value
        return whole_number(value, low, high, f" {unit_name}") * unit

    return BeforeValidator(parse)


def minutes(low: int, high: int) -> BeforeValidator:
    return duration(timedelta(minutes=1), "minutes", low, high)


def seconds(low: int, high: int) -> BeforeValidator:
    return duration(timedelta(seconds=1), "seconds", low, high)


boolean = parse_boolean


def listed_items(value: object) -> list[str]:
    """A comma-separated text or a JSON array (the Logic App's form, e.g. ["Medium","High"])."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{echo(text)} is not a valid JSON array ({exc.msg})") from None
    if not isinstance(value, list | tuple | set | frozenset):
        raise ValueError("is not a comma-separated list or a JSON array")
    items = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{echo(json.dumps(item, default=str))} in the list is not text")
        if item.strip():
            items.append(item.strip())
    return items


def choices(allowed: tuple[str, ...]) -> BeforeValidator:
    """Enum-like lists: matched without regard to case, normalised to the documented spelling."""
    canonical = {choice.lower(): choice for choice in allowed}

    def parse(value: object) -> frozenset[str]:
        items = listed_items(value)
        unknown = [item for item in items if item.lower() not in canonical]
        if unknown:
            names = ", ".join(echo(item) for item in unknown)
            verb = "is" if len(unknown) == 1 else "are"
            raise ValueError(f"{names} {verb} not one of {', '.join(allowed)}")
        if not items:
            raise ValueError(f"names none of {', '.join(allowed)}; leave it unset for the default")
        return frozenset(canonical[item.lower()] for item in items)

    return BeforeValidator(parse)


def texts(pattern: str | None = None, what: str = "") -> BeforeValidator:
    def parse(value: object) -> tuple[str, ...]:
        items = listed_items(value)
        if pattern is not None:
            bad = [item for item in items if not re.fullmatch(pattern, item)]
            if bad:
                raise ValueError(f"{', '.join(echo(item) for item in bad)}: not {what}")
        return tuple(items)

    return BeforeValidator(parse)


def os_binary_rules(value: object) -> tuple[str, ...]:
    """Rules added to the operating-system file table (`domain.os_binaries`), each checked now: a
    JSON array, or a comma-separated list when no rule holds a comma."""
    items = tuple(listed_items(value))
    try:
        OsBinaryRules.with_extra(items)
    except OsBinaryRuleError as exc:
        raise ValueError(str(exc)) from None
    return items


def indicator_action(*, file: bool) -> BeforeValidator:
    """One indicator action; `Allowed` is refused (it would allow-list malware across the fleet)."""
    allowed = tuple(a for a in INDICATOR_ACTIONS if file or a not in FILE_ONLY_ACTIONS)
    canonical = {choice.lower(): choice for choice in allowed}

    def parse(value: object) -> str:
        text = plain_text(value)
        if text.lower() == "allowed":
            raise ValueError("'Allowed' is refused: it would allow the sample's IOCs on every device")
        if text.lower() not in canonical:
            raise ValueError(f"{echo(text)} is not one of {', '.join(allowed)}")
        return canonical[text.lower()]

    return BeforeValidator(parse)


def indicator_severity(value: object) -> str:
    return canonical_choice(plain_text(value), INDICATOR_SEVERITIES)


def one_of(allowed: tuple[str, ...]) -> BeforeValidator:
    """One enum-like value, matched without regard to case, normalised to the documented spelling."""
    return BeforeValidator(lambda value: canonical_choice(plain_text(value), allowed))


def canonical_choice(text: str, allowed: tuple[str, ...]) -> str:
    canonical = {choice.lower(): choice for choice in allowed}
    if text.lower() not in canonical:
        raise ValueError(f"{echo(text)} is not one of {', '.join(allowed)}")
    return canonical[text.lower()]


def plain_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("is not text")
    return value.strip()


def required_text(value: object) -> object:
    """Secrets and ids may arrive as SecretStr in code; only text is checked for emptiness."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("is empty")
    return value


def tenant_id(value: object) -> str:
    text = plain_text(value)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,253}", text):
        raise ValueError(f"{echo(text)} is not a tenant ID (a GUID, or a domain like contoso.onmicrosoft.com)")
    return text


def client_id(value: object) -> str:
    text = plain_text(value)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,253}", text):
        raise ValueError(f"{echo(text)} is not an application (client) ID, which is a GUID")
    return text


_STORAGE_PREFIX = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,41}[a-z0-9]$")


def storage_prefix(value: object) -> str:
    """Names the Azure store's table and queues, so it obeys the queue naming rules."""
    text = plain_text(value)
    if not _STORAGE_PREFIX.match(text):
        raise ValueError(
            f"{echo(text)} is no storage prefix: 3 to 43 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit"
        )
    return text


def state_path(value: object) -> Path:
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ValueError("is not a file path")
    path = Path(value).expanduser()
    if path.is_dir():
        raise ValueError(f"{echo(str(path))} is a directory; give the path of the SQLite file")
    return path


def is_secret_parameter(key: str) -> bool:
    return "password" in key


def analysis_parameters(value: object) -> dict[str, JoeParameter]:
    """Joe Sandbox submission parameters: a JSON object of texts, whole numbers, true/false and lists
    of texts. Which names Joe knows, and which take true or false, the Joe adapter says where it is
    built (`bootstrap.checked_settings`), so loading the settings does not load its client."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:  # no echo: the object may hold archive passwords
            raise ValueError(f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(value, Mapping):
        raise ValueError('must be a JSON object, such as {"internet-access": false}')
    parameters: dict[str, JoeParameter] = {}
    problems = []
    for key, given in value.items():
        if key in _PARAMETER_OWNERS:
            problems.append(f"set {key!r} with {_PARAMETER_OWNERS[key]}, not here")
        elif isinstance(given, str | bool) or (isinstance(given, int) and not isinstance(given, bool)):
            parameters[str(key)] = given
        elif isinstance(given, list | tuple) and all(isinstance(element, str) for element in given):
            parameters[str(key)] = list(given)
        else:
            problems.append(f"{key!r} must be text, a whole number or a list of texts (or true or false)")
    if problems:
        raise ValueError("; ".join(problems))
    return parameters


def secret_parameters_masked(parameters: Mapping[str, object]) -> dict[str, object]:
    return {key: MASK if is_secret_parameter(key) else item for key, item in parameters.items()}
