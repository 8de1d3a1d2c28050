"""Windows file paths read the way Windows reads them, or refused with what is wrong with them.

Two readings, because paths come from two places:

- a path **a program was told to open** (a command-line target) goes through Win32 path
  normalisation ("File path formats on Windows systems"): `/` is a separator, runs of separators
  are one, `.` and `..` are resolved without looking at the disk, an inner segment loses one
  trailing period, the last segment loses all trailing periods and spaces. `\\\\?\\` turns all of
  that off and `\\\\.\\` keeps it (`win32`);
- a path **Defender reported** names a file that exists, spelled as it is on disk: nothing is
  trimmed, because a folder really named `Windows ` or `Windows.` (creatable through `\\\\?\\`) is
  not `C:\\Windows` (`on_disk`).

Neither reading can resolve an 8.3 short name (`C:\\PROGRA~1`), a junction or a symbolic link:
that needs the disk. Case is compared for ASCII letters only (`key`); Windows' own upcase table
is not reproduced, so two spellings that differ in another letter's case are taken as different.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

_INVALID = frozenset('<>"|?*') | frozenset(chr(code) for code in range(32))
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")


class PathProblem(StrEnum):
    EMPTY = "empty"
    RELATIVE = "relative"  # relative to the current directory
    DRIVE_RELATIVE = "drive-relative"  # `C:x` or `\x`: relative to a drive's current directory
    UNC = "network"
    URL = "URL"
    DEVICE = "device"  # `\\.\pipe\x`, `\\?\Volume{…}\x`: not a file on a drive letter
    STREAM = "alternate data stream"
    INVALID = "invalid"


class WindowsPathError(ValueError):
    def __init__(self, problem: PathProblem, text: str) -> None:
        super().__init__(f"{problem.value} path")
        self.problem = problem
        self.text = text


@dataclass(frozen=True)
class WindowsPath:
    """An absolute path on a drive letter: `drive` is `C:` (upper case), `parts` the segments below."""

    drive: str
    parts: tuple[str, ...]

    @property
    def text(self) -> str:
        return self.drive + "\\" + "\\".join(self.parts)

    @property
    def key(self) -> tuple[str, ...]:
        """The path's identity for comparison: ASCII letters upper-cased, nothing else changed."""
        return (self.drive, *(part.translate(_ASCII_UPPER) for part in self.parts))

    @classmethod
    def win32(cls, text: str) -> WindowsPath:
        """The file Windows opens when a program passes `text` to a Win32 file API."""
        return _parse(text, trim=True)

    @classmethod
    def on_disk(cls, text: str) -> WindowsPath:
        """The file a report names, spelled as on disk; a segment with trailing dots or spaces is kept."""
        return _parse(text, trim=False)

    @classmethod
    def folder(cls, text: str) -> WindowsPath:
        """A folder given without a trailing separator (`C:` for the root of C:), read as `win32` does."""
        if len(text) == 2 and text[1] == ":" and text[0].isascii() and text[0].isalpha():
            return cls(text[0].upper() + ":", ())
        return _parse(text, trim=True)

    def join(self, relative: str) -> WindowsPath:
        """`relative` (plain relative, as `WindowsPathError.RELATIVE` says) resolved against this folder."""
        return _parse(self.text + "\\" + relative, trim=True)


def file_name(path: str) -> str:
    """The last segment of a path as written (after the last `\\` or `/`)."""
    return path.replace("/", "\\").rpartition("\\")[2]


def ascii_upper(text: str) -> str:
    return text.translate(_ASCII_UPPER)


def ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def has_scheme(text: str) -> bool:
    """`http:`, `javascript:`, `file:`…: a scheme of two or more characters (one is a drive letter)."""
    colon = text.find(":")
    return colon >= 2 and text[0].isascii() and text[0].isalpha() and all(ch in _SCHEME_CHARS for ch in text[:colon])


def _parse(text: str, *, trim: bool) -> WindowsPath:
    if not text.strip():
        raise WindowsPathError(PathProblem.EMPTY, text)
    if text.startswith(("\\\\?\\", "\\??\\")):
        return _verbatim(text, text[4:])
    if has_scheme(text):
        raise WindowsPathError(PathProblem.URL, text)
    path = text.replace("/", "\\")
    if path.startswith("\\\\.\\"):
        path = path[4:]
        if not _has_drive(path):
            raise WindowsPathError(PathProblem.DEVICE, text)
    elif path.startswith("\\\\"):
        raise WindowsPathError(PathProblem.UNC, text)
    if not _has_drive(path):
        problem = PathProblem.DRIVE_RELATIVE if path.startswith("\\") or path[1:2] == ":" else PathProblem.RELATIVE
        raise WindowsPathError(problem, text)
    if path.endswith("\\"):
        raise WindowsPathError(PathProblem.INVALID, text)  # a folder, not a file
    return WindowsPath(path[0].upper() + ":", _segments(text, path[3:], trim=trim))


def _has_drive(path: str) -> bool:
    return len(path) >= 3 and path[0].isascii() and path[0].isalpha() and path[1] == ":" and path[2] == "\\"


def _verbatim(text: str, rest: str) -> WindowsPath:
    """`\\\\?\\`: no normalisation at all, so `.`, `..`, an empty or trailing-dot segment is taken literally
    by nothing but the file system, which refuses them; such a path names no file we can rely on."""
    if rest[:4].upper() == "UNC\\":
        raise WindowsPathError(PathProblem.UNC, text)
    if not _has_drive(rest):
        raise WindowsPathError(PathProblem.DEVICE, text)
    parts = tuple(rest[3:].split("\\"))
    if any(part in ("", ".", "..") for part in parts):
        raise WindowsPathError(PathProblem.INVALID, text)
    _check_characters(text, parts)
    return WindowsPath(rest[0].upper() + ":", parts)


def _segments(text: str, rest: str, *, trim: bool) -> tuple[str, ...]:
    parts: list[str] = []
    for part in rest.split("\\"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    if not parts:
        raise WindowsPathError(PathProblem.INVALID, text)
    if trim:
        parts = [part[:-1] if part.endswith(".") and not part.endswith("..") else part for part in parts[:-1]] + [
            parts[-1].rstrip(". ")
        ]
        if not all(parts):
            raise WindowsPathError(PathProblem.INVALID, text)
    _check_characters(text, parts)
    return tuple(parts)


def bad_name(part: str) -> bool:
    """A segment no Windows file or folder name can be: a stream separator or a forbidden character."""
    return ":" in part or any(ch in _INVALID for ch in part)


def _check_characters(text: str, parts: list[str] | tuple[str, ...]) -> None:
    for part in parts:
        if ":" in part:
            raise WindowsPathError(PathProblem.STREAM, text)
        if bad_name(part):
            raise WindowsPathError(PathProblem.INVALID, text)
