"""An emulated Linux or macOS device's disk and Defender state, as real files.

Library scripts on these devices are run with real bash (`bash_sandbox`), so what they may write
is a real folder tree: each device gets a private folder holding the device's writable areas
(`fs/var/opt` or `fs/private/var`, and `fs/tmp`), the state of its `mdatp` (`mdatp/`: the JSON
state and the quarantined files' bytes, read and written by `mdatp_model`), and the `bin/`
folder the sandbox puts first on the script's PATH (the `mdatp` wrapper, and on a Mac a `uname`
that says Darwin: the sandbox runs on this Linux host). The folder is removed with the emulator.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joedefender_emulators.mde import mdatp_model
from joedefender_emulators.mde.platforms import Os
from joedefender_emulators.scenario import Blob, Machine

# The writable areas of each device (everything else the script sees is the host's, read-only).
# `/tmp` here is a path on the emulated device, bound from the device's own folder.
WRITABLE: dict[Os, tuple[str, ...]] = {"linux": ("/var/opt", "/tmp"), "macos": ("/private/var", "/tmp")}  # noqa: S108
# Where the sandbox shows the model's state folder to the mdatp wrapper.
MODEL_STATE_MOUNT = "/run/joedefender-emulator/mdatp"
MODEL_MOUNT = "/run/joedefender-emulator/mdatp_model.py"
DEFAULT_AGENT = "101.25032.0008"  # a current agent when the scenario names none


@dataclass(frozen=True)
class DeviceFile:
    path: str  # as the device spells it
    real: Path
    symlink: bool

    @property
    def size(self) -> int:
        return 0 if self.symlink else self.real.stat().st_size

    def read(self) -> bytes:
        return self.real.read_bytes()


class PosixDevice:
    def __init__(self, machine: Machine, os_name: Os, samples: dict[str, Blob]) -> None:
        self.os = os_name
        self.folder = Path(tempfile.mkdtemp(prefix="joedefender-device-"))
        for area in WRITABLE[os_name]:
            (self.folder / "fs" / area.lstrip("/")).mkdir(parents=True)
        os.chmod(self.folder / "fs" / "tmp", 0o1777)  # noqa: S103 - the device's /tmp, as on any Unix
        (self.folder / "mdatp" / mdatp_model.STORE_FOLDER).mkdir(parents=True)
        threats = []
        for n, entry in enumerate(machine.quarantine):
            threat_id = str(uuid.UUID(bytes=hashlib.md5(f"{machine.id}:{n}".encode()).digest()))  # noqa: S324 - an id
            (self.folder / "mdatp" / mdatp_model.STORE_FOLDER / threat_id).write_bytes(samples[entry.sample].read())
            threats.append(
                {"id": threat_id, "name": entry.threat_name, "path": entry.original_path, "status": "quarantined"}
            )
        state = {
            "agent_version": machine.agent_version or DEFAULT_AGENT,
            "listing": machine.mdatp.listing,
            "hang": "restore" if machine.mdatp.hang_on_restore else "",
            "case_insensitive": os_name == "macos",
            "threats": threats,
            "exclusions": [],
        }
        (self.folder / "mdatp" / mdatp_model.STATE_FILE).write_text(json.dumps(state), "utf-8")
        self._write_bin()

    def _write_bin(self) -> None:
        """The commands the sandbox puts first on the script's PATH."""
        folder = self.folder / "bin"
        folder.mkdir()
        python = os.path.realpath(sys.executable)
        wrapper = f'#!/bin/sh\nexec {python} -I -S {MODEL_MOUNT} {MODEL_STATE_MOUNT} "$@"\n'
        (folder / "mdatp").write_text(wrapper, "utf-8")
        os.chmod(folder / "mdatp", 0o755)  # noqa: S103 - a command on the device's PATH
        if self.os == "macos":
            (folder / "uname").write_text('#!/bin/sh\nif [ "${1:-}" = -m ]; then echo arm64; else echo Darwin; fi\n')
            os.chmod(folder / "uname", 0o755)  # noqa: S103 - a command on the device's PATH

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- the disk ------------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        """APFS compares names case-insensitively by default; Linux file systems do not."""
        return path.casefold() if self.os == "macos" else path

    def real_path(self, path: str) -> Path | None:
        """Where a device path lies in the device folder, if in a writable area (no `..`)."""
        if not path.startswith("/") or "\0" in path or any(part in ("..", ".") for part in path.split("/")):
            return None
        clean = "/" + "/".join(part for part in path.split("/") if part)
        for area in WRITABLE[self.os]:
            if clean.startswith(area + "/"):
                return self._resolve_case(clean)
        return None

    def _resolve_case(self, clean: str) -> Path:
        real = self.folder / "fs"
        for part in clean.strip("/").split("/"):
            candidate = real / part
            if self.os == "macos" and not candidate.exists() and real.is_dir():
                match = next((c for c in real.iterdir() if c.name.casefold() == part.casefold()), None)
                candidate = match if match is not None else candidate
            real = candidate
        return real

    def lookup(self, path: str) -> DeviceFile | None:
        real = self.real_path(path)
        if real is None or not (real.is_symlink() or real.is_file()):
            return None
        return DeviceFile(path, real, real.is_symlink())

    def files(self) -> Iterator[DeviceFile]:
        """Every file (and link) in the writable areas, as the device would list them."""
        root = self.folder / "fs"
        for folder, dirs, names in os.walk(root):
            for name in sorted(names + [d for d in dirs if (Path(folder) / d).is_symlink()]):
                real = Path(folder) / name
                yield DeviceFile("/" + str(real.relative_to(root)), real, real.is_symlink())

    def folders(self) -> list[str]:
        """Every folder in the writable areas (empty ones too: a script may leave those)."""
        root = self.folder / "fs"
        return sorted("/" + str(Path(f).relative_to(root)) for f, _, _ in os.walk(root) if Path(f) != root)

    # --- Defender ------------------------------------------------------------------------------

    def mdatp_state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.folder / "mdatp" / mdatp_model.STATE_FILE).read_text("utf-8"))
        return state

    def quarantined(self) -> list[dict[str, Any]]:
        return [t for t in self.mdatp_state()["threats"] if t["status"] == "quarantined"]

    def restored_paths(self) -> list[str]:
        return [str(t["path"]) for t in self.mdatp_state()["threats"] if t["status"] == "restored"]

    def exclusions(self) -> list[str]:
        return list(self.mdatp_state()["exclusions"])

    def mdatp_calls(self) -> list[list[str]]:
        return list(self.mdatp_state().get("calls", []))
