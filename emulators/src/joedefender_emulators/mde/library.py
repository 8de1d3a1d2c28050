"""The live response library: scripts and files that RunScript and PutFile may use."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from joedefender_emulators.http import ApiError, FormField
from joedefender_emulators.mde.common import format_time, not_found

MAX_FILE_BYTES = 20 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")


@dataclass(frozen=True)
class LibraryFile:
    file_name: str
    content: bytes
    description: str
    parameters_description: str
    has_parameters: bool
    created: datetime
    updated: datetime
    created_by: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "fileName": self.file_name,
            "sha256": self.sha256,
            "description": self.description,
            "creationTime": format_time(self.created),
            "lastUpdatedTime": format_time(self.updated),
            "createdBy": self.created_by,
            "hasParameters": self.has_parameters,
            "parametersDescription": self.parameters_description,
        }


def _bad(message: str) -> ApiError:
    return ApiError(400, "InvalidRequestBody", message)


def _text(fields: Mapping[str, list[FormField]], name: str, default: str = "") -> str:
    values = fields.get(name)
    return values[0].text if values else default


def _flag(fields: Mapping[str, list[FormField]], name: str) -> bool:
    raw = _text(fields, name, "false").strip().lower()
    if raw not in ("true", "false"):
        raise _bad(f"'{name}' must be true or false, got '{raw[:20]}'.")
    return raw == "true"


class Library:
    """File names compare case-insensitively (docs silent; they are Windows file names)."""

    def __init__(self) -> None:
        self._files: dict[str, LibraryFile] = {}

    def get(self, file_name: str) -> LibraryFile | None:
        return self._files.get(file_name.lower())

    def all(self) -> list[LibraryFile]:
        return sorted(self._files.values(), key=lambda f: f.file_name.lower())

    def upload(
        self, content_type: str, fields: Mapping[str, list[FormField]], app_id: str, now: datetime
    ) -> LibraryFile:
        if not content_type.lower().startswith("multipart/form-data"):
            raise _bad("The request must be multipart/form-data.")
        # The docs' table calls the field `File`, the curl sample sends `file`: accept both.
        parts = fields.get("file") or fields.get("File")
        if not parts:
            raise ApiError(400, "MissingRequiredParameter", "Missing required parameter: file.")
        part = parts[0]
        name = (part.filename or "").strip()
        if not name:
            raise _bad("The 'file' part has no file name.")
        if not _NAME.fullmatch(name):
            raise _bad(f"Invalid file name '{name[:100]}': use letters, digits, '-', '_' and '.' only.")
        if len(part.value) > MAX_FILE_BYTES:
            raise _bad(f"The file is {len(part.value)} bytes; the library accepts at most 20 MB ({MAX_FILE_BYTES}).")
        override = _flag(fields, "OverrideIfExists")
        existing = self.get(name)
        if existing is not None and not override:
            # docs silent on the answer: a 400 that says how to replace the file.
            raise ApiError(
                400,
                "BadRequest",
                f"A library file named '{existing.file_name}' already exists. "
                "Send OverrideIfExists=true to replace it.",
            )
        entry = LibraryFile(
            file_name=name,
            content=part.value,
            description=_text(fields, "Description"),
            parameters_description=_text(fields, "ParametersDescription"),
            has_parameters=_flag(fields, "HasParameters"),
            created=now,
            updated=now,
            created_by=app_id,
        )
        if existing is not None:
            entry = replace(entry, created=existing.created, created_by=existing.created_by)
        self._files[name.lower()] = entry
        return entry

    def delete(self, file_name: str) -> None:
        if self._files.pop(file_name.lower(), None) is None:
            raise not_found(f"Library file {file_name[:100]}")
