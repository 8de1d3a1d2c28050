"""The emulated endpoints' disks and quarantines: what GetFile reads and the collection script
writes. Scenario files stay as Blobs (generated 200 MB samples are never held in memory); the
quarantine is kept in Defender's encrypted layout (`quarantine.py`), produced on demand.

Folders are kept with what the collect script checks of them (owner, access rules, junction),
so that a scenario can plant one as a local user could: a folder the user owns, or a junction.
A write under a junction lands where the junction leads, as on NTFS: a script that did not
check would write into the planter's folder, and the tests would see it there."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from joedefender_emulators.mde import hostile_quarantine as hostile
from joedefender_emulators.mde import quarantine as store
from joedefender_emulators.mde.endpoint_script import SYSTEM_SID, FolderState, QuarantineFile
from joedefender_emulators.mde.platforms import Os, device_os
from joedefender_emulators.mde.posix_device import PosixDevice
from joedefender_emulators.scenario import Blob, Machine, ScenarioError

_CHUNK = 1 << 20


class FileContent:
    """Immutable file bytes: a scenario Blob (streamed), bytes a script wrote, or bytes produced
    on demand (an encrypted quarantine file)."""

    def __init__(
        self,
        blob: Blob | None = None,
        data: bytes | None = None,
        produced: tuple[Callable[[], Iterator[bytes]], int] | None = None,
    ) -> None:
        if sum(x is not None for x in (blob, data, produced)) != 1:
            raise ValueError("a file is either a blob, bytes or produced")
        self._blob = blob
        self._data = data
        self._produced = produced

    @property
    def size(self) -> int:
        if self._data is not None:
            return len(self._data)
        if self._produced is not None:
            return self._produced[1]
        assert self._blob is not None
        if self._blob.generate is not None:
            return self._blob.generate.size
        return len(self._blob.read())

    def chunks(self) -> Iterator[bytes]:
        if self._data is not None:
            for start in range(0, len(self._data), _CHUNK):
                yield self._data[start : start + _CHUNK]
            return
        if self._produced is not None:
            yield from self._produced[0]()
            return
        assert self._blob is not None
        yield from self._blob.chunks()

    def read(self) -> bytes:
        return self._data if self._data is not None else b"".join(self.chunks())


def normalize(path: str) -> str:
    """Windows paths compare case-insensitively, and `/` is a separator too."""
    return path.replace("/", "\\").rstrip("\\").lower()


def path_key(os_name: Os, path: str) -> str:
    """How a device compares paths: Windows as `normalize`; Linux exactly (a backslash is an
    ordinary character); macOS case-insensitively (APFS's default)."""
    if os_name == "windows":
        return normalize(path)
    clean = "/" + "/".join(part for part in path.split("/") if part) if path.startswith("/") else path
    return clean.casefold() if os_name == "macos" else clean


@dataclass(frozen=True)
class StoredFile:
    path: str
    content: FileContent
    kind: str = "file"  # or "link" (a reparse point, a symbolic link) or "sparse": GetFile refuses both


class EndpointFiles:
    """One machine's files by path, plus its Defender quarantine (Entries and ResourceData files,
    encrypted, produced on demand; GetFile may read them unless the scenario refuses it)."""

    def __init__(
        self,
        machine: Machine,
        samples: Mapping[str, Blob],
        quarantine_getfile: bool = True,
        damaged_entries: bool = False,
        quarantine_script_read: bool = True,
    ) -> None:
        self.os: Os = device_os(machine) or "windows"
        self._files: dict[str, StoredFile] = {}
        for item in machine.files:
            self._files[self._key(item.path)] = StoredFile(item.path, FileContent(samples[item.sample]), item.kind)
        self._folders: dict[str, FolderState] = {
            normalize(f.path): FolderState(f.path, f.owner, tuple(f.access), f.junction_to)
            for f in machine.planted_folders
        }
        # A Linux or macOS device: its disk areas a script may write and its mdatp, as real files.
        self.posix = PosixDevice(machine, self.os, dict(samples)) if self.os != "windows" else None
        self.quarantine_getfile = quarantine_getfile
        self.damaged_entries = damaged_entries
        self.quarantine_script_read = quarantine_script_read
        self._restores: list[str] = []  # original paths MpCmdRun -Restore took out of the quarantine
        self._quarantine: list[store.QuarantinedFile] = []
        for n, entry in enumerate(machine.quarantine if self.posix is None else ()):
            blob = samples[entry.sample]
            self._quarantine.append(
                store.quarantine(0x80000000 + 0x1000 * n + 0x8A1B, entry.threat_name, entry.original_path, blob.chunks)
            )
        self._planted_entries = [
            StoredFile(f"{store.ROOT}\\Entries\\{{80000BAD-0000-0000-0000-{n:012X}}}", FileContent(data=data))
            for n, data in enumerate(_planted(machine))
        ]

    def _quarantine_files(self) -> dict[str, StoredFile]:
        files: dict[str, StoredFile] = {}
        for q in self._quarantine:
            files[normalize(q.entries_path)] = StoredFile(q.entries_path, FileContent(data=self._entries_bytes(q)))
            content = FileContent(produced=(q.resource_chunks, q.resource_size))
            files[normalize(q.resource_path)] = StoredFile(q.resource_path, content)
        files.update((normalize(f.path), f) for f in self._planted_entries)
        return files

    def _entries_bytes(self, q: store.QuarantinedFile) -> bytes:
        """The Entries file, or (scenario damaged_entries) its first half: truncated, unreadable."""
        return q.entries_bytes[: len(q.entries_bytes) // 2] if self.damaged_entries else q.entries_bytes

    def _key(self, path: str) -> str:
        return path_key(self.os, path)

    def close(self) -> None:
        if self.posix is not None:
            self.posix.close()

    @property
    def restores(self) -> list[str]:
        """Original paths a restore took out of the quarantine (MpCmdRun, or mdatp)."""
        return self._restores if self.posix is None else self.posix.restored_paths()

    def lookup(self, path: str) -> StoredFile | None:
        if self.posix is not None:
            found = self._files.get(self._key(path))
            real = self.posix.lookup(path) if found is None else None
            if real is None:
                return found
            return StoredFile(
                real.path, FileContent(data=b"" if real.symlink else real.read()), "link" * real.symlink or "file"
            )
        path = self._through_junctions(path)
        return self._files.get(normalize(path)) or self._quarantine_files().get(normalize(path))

    def is_quarantine(self, path: str) -> bool:
        return self.posix is None and normalize(path).startswith(normalize(store.ROOT) + "\\")

    def write(self, path: str, content: FileContent) -> None:
        if self.posix is None:
            path = self._through_junctions(path)
        self._files[self._key(path)] = StoredFile(path, content)

    def _through_junctions(self, path: str) -> str:
        """Where ``path`` really is: a junction on the way leads somewhere else."""
        for key, folder in self._folders.items():
            if folder.junction_to is not None and normalize(path).startswith(key + "\\"):
                return folder.junction_to.rstrip("\\") + path[len(key) :]
        return path

    def delete_tree(self, folder: str) -> None:
        """Delete ``folder`` and everything under it; a junction goes as a link only (what it
        leads to stays), as Remove-Tree deletes it."""
        root = self._key(folder)
        separator = "\\" if self.posix is None else "/"
        for table in (self._files, self._folders):
            for key in [k for k in table if k == root or k.startswith(root + separator)]:
                del table[key]

    def folder(self, path: str) -> FolderState | None:
        return self._folders.get(normalize(path))

    def make_folder(self, path: str, owner: str, access: tuple[str, ...]) -> None:
        if normalize(path) not in self._folders:
            self._folders[normalize(path)] = FolderState(path, owner, access)

    def set_access(self, path: str, access: tuple[str, ...]) -> None:
        """Set-Acl with the script's security descriptor: SYSTEM becomes the owner too."""
        current = self._folders[normalize(path)]
        self._folders[normalize(path)] = FolderState(current.path, SYSTEM_SID, access, current.junction_to)

    def folder_listing(self) -> list[dict[str, object]]:
        return [
            {"path": f.path, "owner": f.owner, "access": list(f.access), "junctionTo": f.junction_to}
            for _, f in sorted(self._folders.items())
        ]

    def listing(self) -> list[dict[str, object]]:
        """The machine's files outside the quarantine (what a script could have written)."""
        files = [{"path": stored.path, "size": stored.content.size} for _, stored in sorted(self._files.items())]
        if self.posix is not None:
            files += [{"path": f.path, "size": f.size} for f in self.posix.files()]
        return files

    def posix_details(self) -> dict[str, object]:
        """On Linux and macOS: the folders of the writable areas, mdatp's exclusions and calls."""
        if self.posix is None:
            return {}
        return {
            "folders": self.posix.folders(),
            "exclusions": self.posix.exclusions(),
            "mdatpCalls": self.posix.mdatp_calls(),
        }

    def quarantine_listing(self) -> list[dict[str, object]]:
        if self.posix is not None:
            return [
                {"threatName": t["name"], "originalPath": t["path"], "id": t["id"]} for t in self.posix.quarantined()
            ]
        return [
            {
                "threatName": q.threat_name,
                "originalPath": q.original_path,
                "size": q.payload_size,
                "entries": q.entries_path,
                "resourceData": q.resource_path,
                "resourceSize": q.resource_size,
            }
            for q in self._quarantine
        ]

    def as_simulated_endpoint(self) -> SimulatedEndpointAdapter:
        return SimulatedEndpointAdapter(self)

    def resource_files(self) -> list[QuarantineFile]:
        # Newest first: the scenario's last entry is the newest detection.
        return [QuarantineFile(q.resource_path, q.resource_size) for q in reversed(self._quarantine)]

    def entries_files(self) -> list[QuarantineFile]:
        planted = [QuarantineFile(f.path, f.content.size) for f in reversed(self._planted_entries)]
        return planted + [
            QuarantineFile(q.entries_path, len(self._entries_bytes(q))) for q in reversed(self._quarantine)
        ]

    def restore(self, original_path: str, destination: str) -> list[str]:
        taken = [q for q in self._quarantine if normalize(q.original_path) == normalize(original_path)]
        written: list[str] = []
        for q in taken:
            self._quarantine.remove(q)
            self._restores.append(q.original_path)
            target = f"{destination}\\{q.original_path.rsplit(chr(92), 1)[-1]}"
            self.write(target, FileContent(data=b"".join(_payload(q))))
            written.append(target)
        return written


def _planted(machine: Machine) -> Iterator[bytes]:
    """The crafted Entries files the scenario planted on ``machine``."""
    for planted in machine.planted_entries:
        layouts = hostile.hostile_entries(1 << 20, planted.resources)
        if planted.layout not in layouts:
            raise ScenarioError(f"unknown planted Entries layout {planted.layout!r}; known: {', '.join(layouts)}")
        yield layouts[planted.layout]


def _payload(q: store.QuarantinedFile) -> Iterator[bytes]:
    payload = store.read_payload(q.resource_chunks())
    if payload is not None:
        yield payload


class SimulatedEndpointAdapter:
    """`endpoint_script.SimulatedEndpoint` over an EndpointFiles, for the scripts' simulation."""

    def __init__(self, files: EndpointFiles) -> None:
        self._files = files

    def resource_files(self) -> Sequence[QuarantineFile]:
        return self._files.resource_files()

    def entries_files(self) -> Sequence[QuarantineFile]:
        return self._files.entries_files()

    def read_quarantine_file(self, path: str) -> Iterator[bytes]:
        """The file as a script reads it: nothing when it is not there or reading is denied."""
        stored = self._files.lookup(path) if self._files.quarantine_script_read else None
        return iter(()) if stored is None else stored.content.chunks()

    def restore(self, original_path: str, destination: str) -> list[str]:
        return self._files.restore(original_path, destination)

    def read_file(self, path: str) -> bytes | None:
        stored = self._files.lookup(path)
        return None if stored is None else stored.content.read()

    def write_file(self, path: str, content: bytes) -> None:
        self._files.write(path, FileContent(data=bytes(content)))

    def delete_tree(self, folder: str) -> None:
        self._files.delete_tree(folder)

    def folder(self, path: str) -> FolderState | None:
        return self._files.folder(path)

    def make_folder(self, path: str, owner: str, access: tuple[str, ...]) -> None:
        self._files.make_folder(path, owner, access)

    def set_access(self, path: str, access: tuple[str, ...]) -> None:
        self._files.set_access(path, access)
