"""The emulated endpoints' disks and quarantines: what GetFile reads and the collection script
writes. Scenario files stay as Blobs (generated 200 MB samples are never held in memory)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from joedefender_emulators.mde.endpoint_script import QuarantinedItem
from joedefender_emulators.scenario import Blob, Machine

_CHUNK = 1 << 20


class FileContent:
    """Immutable file bytes: either a scenario Blob (streamed) or bytes a script wrote."""

    def __init__(self, blob: Blob | None = None, data: bytes | None = None) -> None:
        if (blob is None) == (data is None):
            raise ValueError("a file is either a blob or bytes")
        self._blob = blob
        self._data = data

    @property
    def size(self) -> int:
        if self._data is not None:
            return len(self._data)
        assert self._blob is not None
        if self._blob.generate is not None:
            return self._blob.generate.size
        return len(self._blob.read())

    def chunks(self) -> Iterator[bytes]:
        if self._data is not None:
            for start in range(0, len(self._data), _CHUNK):
                yield self._data[start : start + _CHUNK]
            return
        assert self._blob is not None
        yield from self._blob.chunks()

    def read(self) -> bytes:
        return self._data if self._data is not None else b"".join(self.chunks())


def normalize(path: str) -> str:
    """Windows paths compare case-insensitively, and `/` is a separator too."""
    return path.replace("/", "\\").rstrip("\\").lower()


@dataclass(frozen=True)
class StoredFile:
    path: str
    content: FileContent


@dataclass(frozen=True)
class _Quarantined:
    threat_name: str
    original_path: str
    content: FileContent


class EndpointFiles:
    """One machine's files by path, plus its Defender quarantine (read-only here)."""

    def __init__(self, machine: Machine, samples: Mapping[str, Blob]) -> None:
        self._files: dict[str, StoredFile] = {}
        for item in machine.files:
            self._files[normalize(item.path)] = StoredFile(item.path, FileContent(samples[item.sample]))
        self._quarantine = [
            _Quarantined(entry.threat_name, entry.original_path, FileContent(samples[entry.sample]))
            for entry in machine.quarantine
        ]

    def lookup(self, path: str) -> StoredFile | None:
        return self._files.get(normalize(path))

    def write(self, path: str, content: FileContent) -> None:
        self._files[normalize(path)] = StoredFile(path, content)

    def delete_tree(self, folder: str) -> None:
        root = normalize(folder)
        for key in [k for k in self._files if k == root or k.startswith(root + "\\")]:
            del self._files[key]

    def listing(self) -> list[dict[str, object]]:
        return [{"path": stored.path, "size": stored.content.size} for _, stored in sorted(self._files.items())]

    def quarantine_listing(self) -> list[dict[str, object]]:
        return [
            {"threatName": q.threat_name, "originalPath": q.original_path, "size": q.content.size}
            for q in self._quarantine
        ]

    def as_simulated_endpoint(self) -> SimulatedEndpointAdapter:
        return SimulatedEndpointAdapter(self)

    def quarantined_items(self) -> list[QuarantinedItem]:
        return [QuarantinedItem(q.threat_name, q.original_path, q.content.read()) for q in self._quarantine]


class SimulatedEndpointAdapter:
    """`endpoint_script.SimulatedEndpoint` over an EndpointFiles, for the collection script's simulation."""

    def __init__(self, files: EndpointFiles) -> None:
        self._files = files

    def quarantine(self) -> Sequence[QuarantinedItem]:
        return self._files.quarantined_items()

    def write_file(self, path: str, content: bytes) -> None:
        self._files.write(path, FileContent(data=bytes(content)))

    def delete_tree(self, folder: str) -> None:
        self._files.delete_tree(folder)
