"""A model of Defender's `mdatp` command line on Linux and macOS, as its documentation describes it.

It runs as the `mdatp` a script finds on an emulated Linux or macOS device (the emulator puts a
two-line wrapper on that device's PATH), reading and writing the device's Defender state: a JSON
file and the quarantined files' bytes, both in a folder the emulator hands over for the run and
reads back afterwards. Standard library only, so it runs with `python -I -S` inside the sandbox.

What it does (linux-resources.md, mac-resources.md; coverage.md section 2):
- `threat list` and `threat quarantine list`, as text or with `--output json`. The JSON schema is
  not documented: the device state picks one of two shapes (`listing`), so a reader that relies
  on one shape's key names fails here as it might on a real device.
- Restore. Agents from 101.23092.0012: `threat quarantine restore threat-path --path P
  --destination-path D` (every quarantined entry whose original path is P) and `... threat-id --id
  X --destination-path D`. Older agents: `threat quarantine restore --id X --path D`. The docs list
  the old form only for agents "prior to 101.23092.0012", so a newer agent here refuses it, and an
  older one refuses the new forms. A restored file is written as D/<its base name> and the entry
  leaves the quarantine (its threat stays in `threat list`, status `restored`). An unknown path or
  id, a destination that is not an existing folder, or a file already there is an error.
- `exclusion folder add|remove --path P` and `exclusion list`.
- `version`.
Exit codes and error texts are not documented: 0 on success, 1 for a failed operation, 2 for a
command line this agent does not take, the reason on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

NEW_RESTORE_SYNTAX = (101, 23092, 12)  # the agent that added restore by original path
STATE_FILE = "state.json"
STORE_FOLDER = "store"  # the quarantined files' bytes (the model's own layout: the real one is undocumented)
_HANG_SECONDS = 3600.0


class MdatpError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        return ()


class Device:
    """The device's Defender state, in the folder the emulator handed over."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.state: dict[str, Any] = json.loads((folder / STATE_FILE).read_text("utf-8"))

    def save(self) -> None:
        temporary = self.folder / (STATE_FILE + ".new")
        temporary.write_text(json.dumps(self.state), "utf-8")
        os.replace(temporary, self.folder / STATE_FILE)

    @property
    def new_agent(self) -> bool:
        return version_tuple(self.state["agent_version"]) >= NEW_RESTORE_SYNTAX

    def same_path(self, a: str, b: str) -> bool:
        """APFS (macOS) compares names case-insensitively by default; Linux file systems do not."""
        return a.casefold() == b.casefold() if self.state.get("case_insensitive") else a == b

    def quarantined(self) -> list[dict[str, Any]]:
        return [t for t in self.state["threats"] if t["status"] == "quarantined"]

    def restore(self, threats: Sequence[dict[str, Any]], destination: str) -> None:
        folder = Path(destination)
        if not folder.is_absolute() or folder.is_symlink() or not folder.is_dir():
            raise MdatpError(f"Destination path {destination} is not an existing folder")
        for threat in threats:
            target = folder / Path(threat["path"]).name
            if target.exists() or target.is_symlink():
                raise MdatpError(f"Cannot restore threat {threat['id']}: {target} already exists")
            data = (self.folder / STORE_FOLDER / threat["id"]).read_bytes()
            with open(target, "xb") as out:
                out.write(data)
            threat["status"] = "restored"
            (self.folder / STORE_FOLDER / threat["id"]).unlink()
            self.save()
            if self.state.get("hang") == "restore":
                # A hung agent: the plaintext is on disk and the command never returns.
                time.sleep(_HANG_SECONDS)


def _options(words: Sequence[str], allowed: Sequence[str]) -> dict[str, str]:
    """`--name value` pairs; anything else is a usage error."""
    found: dict[str, str] = {}
    at = 0
    while at < len(words):
        name = words[at]
        if name not in allowed or at + 1 >= len(words) or name in found:
            raise MdatpError(f"Invalid argument '{name}'", 2)
        found[name] = words[at + 1]
        at += 2
    return found


def _required(options: dict[str, str], *names: str) -> list[str]:
    missing = [n for n in names if n not in options]
    if missing:
        raise MdatpError(f"Missing required option {missing[0]}", 2)
    return [options[n] for n in names]


def _listing(device: Device, threats: list[dict[str, Any]], as_json: bool) -> str:
    if not as_json:
        lines = [f"Id: {t['id']}\nName: {t['name']}\nStatus: {t['status']}\nPath: {t['path']}\n" for t in threats]
        return "\n".join(lines)
    if device.state.get("listing") == "wrapped":
        items: Any = {
            "threats": [
                {"threatId": t["id"], "threatName": t["name"], "status": t["status"], "filePath": t["path"]}
                for t in threats
            ]
        }
    else:
        items = [
            {
                "id": t["id"],
                "name": t["name"],
                "threatStatus": t["status"],
                "resources": [{"type": "file", "path": t["path"]}],
            }
            for t in threats
        ]
    return json.dumps(items, indent=1)


def _output_format(words: Sequence[str]) -> tuple[list[str], bool]:
    words = list(words)
    if "--output" in words:
        at = words.index("--output")
        if at + 1 >= len(words) or words[at + 1] not in ("json", "table"):
            raise MdatpError("--output takes json or table", 2)
        fmt = words[at + 1]
        del words[at : at + 2]
        return words, fmt == "json"
    return words, False


def _restore(device: Device, words: Sequence[str]) -> str:
    if words[:1] in (["threat-path"], ["threat-id"]):
        if not device.new_agent:
            raise MdatpError(f"Invalid argument '{words[0]}'", 2)
        if words[0] == "threat-path":
            path, destination = _required(
                _options(words[1:], ("--path", "--destination-path")), "--path", "--destination-path"
            )
            threats = [t for t in device.quarantined() if device.same_path(t["path"], path)]
            if not threats:
                raise MdatpError(f"No quarantined threat found for path {path}")
        else:
            threat_id, destination = _required(
                _options(words[1:], ("--id", "--destination-path")), "--id", "--destination-path"
            )
            threats = [t for t in device.quarantined() if t["id"] == threat_id]
            if not threats:
                raise MdatpError(f"No quarantined threat with id {threat_id}")
    else:
        if device.new_agent:
            raise MdatpError("Invalid arguments: use restore threat-id or restore threat-path", 2)
        threat_id, destination = _required(_options(words, ("--id", "--path")), "--id", "--path")
        threats = [t for t in device.quarantined() if t["id"] == threat_id]
        if not threats:
            raise MdatpError(f"No quarantined threat with id {threat_id}")
    device.restore(threats, destination)
    return f"Restored {len(threats)} threat(s)"


def _exclusion(device: Device, words: Sequence[str]) -> str:
    words, as_json = _output_format(words)
    exclusions: list[str] = device.state["exclusions"]
    if words == ["list"]:
        if as_json:
            return json.dumps({"exclusions": [{"type": "folder", "path": p} for p in exclusions]})
        return "\n".join(f"Excluded folder: {p}" for p in exclusions)
    if words[:2] not in (["folder", "add"], ["folder", "remove"]):
        raise MdatpError("Invalid exclusion command", 2)
    (path,) = _required(_options(words[2:], ("--path",)), "--path")
    if not path.startswith("/"):
        raise MdatpError(f"Path {path} is not absolute")
    if words[1] == "add":
        if path in exclusions:
            raise MdatpError(f"Folder {path} is already excluded")
        exclusions.append(path)
    else:
        if path not in exclusions:
            raise MdatpError(f"Folder {path} is not excluded")
        exclusions.remove(path)
    device.save()
    return "Configuration property updated."


def run(device: Device, argv: Sequence[str]) -> str:
    """Carry out one mdatp command line; returns what it prints, raises MdatpError."""
    device.state.setdefault("calls", []).append(list(argv))
    device.save()
    words, as_json = _output_format(argv)
    commands: dict[tuple[str, ...], Callable[[], str]] = {
        ("version",): lambda: f"Product version: {device.state['agent_version']}",
        ("threat", "list"): lambda: _listing(device, device.state["threats"], as_json),
        ("threat", "quarantine", "list"): lambda: _listing(device, device.quarantined(), as_json),
    }
    command = commands.get(tuple(words))
    if command is not None:
        return command()
    if words[:3] == ["threat", "quarantine", "restore"]:
        return _restore(device, words[3:])
    if words[:1] == ["exclusion"]:
        return _exclusion(device, list(argv)[1:])
    raise MdatpError(f"Invalid command: {' '.join(argv)[:200]}", 2)


def main(argv: Sequence[str]) -> int:
    if len(argv) < 1:
        print("usage: mdatp_model.py STATE_FOLDER [mdatp arguments]", file=sys.stderr)
        return 2
    device = Device(Path(argv[0]))
    try:
        print(run(device, argv[1:]))
    except MdatpError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
