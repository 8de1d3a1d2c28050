"""Small scenarios for pipeline tests: machines, files, alerts and verdicts in a few lines."""

from __future__ import annotations

from typing import Any

FAST = 0.002  # one emulated minute in 0.12 real seconds


def machine_id(n: int) -> str:
    return f"{n:040x}"


def machine(n: int, *, files: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": machine_id(n),
        "computerDnsName": f"ws-{n:02d}.contoso.test",
        "files": [{"path": path, "sample": sample} for path, sample in (files or {}).items()],
        **extra,
    }


def file_evidence(sample: str, path: str, *, status: str = "Detected") -> dict[str, Any]:
    """File evidence as Defender gives it: the directory and the name apart (a POSIX path split at `/`)."""
    directory, _, name = path.rpartition("/" if path.startswith("/") else "\\")
    return {"entityType": "File", "$sample": sample, "fileName": name, "filePath": directory, "detectionStatus": status}


def process_evidence(
    image: str, command_line: str | None = None, *, sample: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A Process item as Defender's alert example has it: the image's hashes (of `sample`), name and
    folder, the command line, the parent's name and folder only."""
    directory, _, name = image.rpartition("\\")
    item: dict[str, Any] = {
        "entityType": "Process",
        "fileName": name,
        "filePath": directory,
        "processId": 4242,
        "processCommandLine": command_line,
        "parentProcessFileName": "explorer.exe",
        "parentProcessFilePath": "C:\\Windows",
        "detectionStatus": "Detected",
        **extra,
    }
    if sample is not None:
        item["$sample"] = sample
    return item


def alert(
    n: int,
    on_machine: int,
    *evidence: dict[str, Any],
    source: str = "WindowsDefenderAtp",
    status: str = "New",
    severity: str = "High",
    threat: str | None = None,
) -> dict[str, Any]:
    return {
        "id": f"da6386400000000{n:05d}_{n}",
        "severity": severity,
        "status": status,
        "detectionSource": source,
        "title": f"test alert {n}",
        "threatName": threat,
        "machineId": machine_id(on_machine),
        "alertCreationTime": "2026-11-27T08:00:00Z",
        "lastUpdateTime": "2026-11-27T08:00:00Z",
        "comments": [],
        "evidence": list(evidence),
    }


def world(
    *,
    samples: dict[str, str],
    machines: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
    verdicts: list[dict[str, Any]] = (),  # type: ignore[assignment]
    analyses: list[dict[str, Any]] = (),  # type: ignore[assignment]
    time_scale: float = FAST,
    **defender: Any,
) -> dict[str, Any]:
    return {
        "name": "test",
        "time_scale": time_scale,
        "samples": {name: {"text": text} for name, text in samples.items()},
        "defender": {"machines": machines, "alerts": alerts, **defender},
        "joe": {"verdicts": list(verdicts), "analyses": list(analyses)},
    }
