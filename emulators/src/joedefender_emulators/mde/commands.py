"""The runliveresponse request body: its commands, their parameters and their order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from joedefender_emulators.http import ApiError
from joedefender_emulators.mde.common import check_properties, json_object

# Per command type: (allowed parameter keys, required ones). Keys are case-sensitive.
PARAMETERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "PutFile": (("FileName",), ("FileName",)),
    "RunScript": (("ScriptName", "Args"), ("ScriptName",)),
    "GetFile": (("Path",), ("Path",)),
}
# Commands must come as PutFile*, then RunScript*, then GetFile* (run-live-response.md).
ORDER = {"PutFile": 0, "RunScript": 1, "GetFile": 2}


@dataclass(frozen=True)
class CommandSpec:
    type: str
    params: tuple[tuple[str, str], ...]

    def param(self, key: str, default: str = "") -> str:
        return next((value for name, value in self.params if name == key), default)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "params": [{"key": k, "value": v} for k, v in self.params]}


@dataclass(frozen=True)
class LiveResponseRequest:
    commands: tuple[CommandSpec, ...]
    comment: str


def _bad(message: str) -> ApiError:
    return ApiError(400, "InvalidRequestBody", message)


def parse_request(body: Any) -> LiveResponseRequest:
    body = json_object(body)
    # docs silent on whether Comment is required: every doc sample sends it, so it is required here.
    check_properties(body, ("Commands", "Comment"), ("Commands", "Comment"))
    comment = body["Comment"]
    if not isinstance(comment, str):
        raise _bad("'Comment' must be a string.")
    raw_commands = body["Commands"]
    if not isinstance(raw_commands, list) or not raw_commands:
        raise _bad("'Commands' must be a non-empty list.")
    commands = tuple(_command(raw, position) for position, raw in enumerate(raw_commands))
    ranks = [ORDER[c.type] for c in commands]
    if ranks != sorted(ranks):
        raise _bad("Commands must be ordered PutFile, then RunScript, then GetFile.")
    return LiveResponseRequest(commands, comment)


def _command(raw: Any, position: int) -> CommandSpec:
    where = f"Commands[{position}]"
    if not isinstance(raw, dict):
        raise _bad(f"{where} must be an object with 'type' and 'params'.")
    try:
        check_properties(raw, ("type", "params"), ("type", "params"))
    except ApiError as exc:
        raise ApiError(exc.status, exc.code, f"{where}: {exc.message}") from None
    kind = raw["type"]
    if kind not in PARAMETERS:
        raise _bad(f"{where}: unknown command type {str(kind)[:40]!r}; use PutFile, RunScript or GetFile.")
    allowed, required = PARAMETERS[kind]
    params = raw["params"]
    if not isinstance(params, list):
        raise _bad(f"{where}: 'params' must be a list of {{key, value}} objects.")
    pairs: list[tuple[str, str]] = []
    for item in params:
        if not isinstance(item, dict) or set(item) != {"key", "value"}:
            raise _bad(f"{where}: each param must be an object with exactly 'key' and 'value'.")
        key, value = item["key"], item["value"]
        if key not in allowed:
            raise _bad(f"{where}: {kind} takes the parameter(s) {', '.join(allowed)}; got {str(key)[:40]!r}.")
        if not isinstance(value, str):
            raise _bad(f"{where}: the value of {key} must be a string.")
        if any(key == seen for seen, _ in pairs):
            raise _bad(f"{where}: the parameter {key} is given twice.")
        pairs.append((key, value))
    for key in required:
        value = next((v for k, v in pairs if k == key), "")
        if not value.strip():
            raise ApiError(400, "MissingRequiredParameter", f"{where}: {kind} needs a non-empty {key}.")
    return CommandSpec(kind, tuple(pairs))
