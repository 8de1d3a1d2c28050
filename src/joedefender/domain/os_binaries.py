"""Which files are part of the operating system, so never a sample: a rule table by folder.

A rule is a plain string, the same syntax for the built-in table and for the rules a user adds:

    [!][linux:|macos:]<absolute path>

- a Windows path (`C:\\…`) applies to Windows devices, a POSIX path (`/…`) to Linux and macOS
  devices, or to one of them with the `linux:` / `macos:` prefix;
- a segment that is exactly `*` stands for any one file or folder name; a last segment `**`
  stands for anything below, at any depth; no other wildcard exists;
- `!` makes an exception: a path an exception matches is not an OS binary whatever else matches
  (so a user can have a file in an OS folder analysed after all).

Matching is exact on POSIX and case-insensitive (ASCII letters) on Windows, on the path as it is
on disk (`WindowsPath.on_disk`): `C:\\Windows\\..\\Users\\x.exe` is `C:\\Users\\x.exe`, `\\\\?\\C:\\Windows\\…`
and `C:/windows/…` are `C:\\Windows\\…`, but a folder named `Windows ` or `Windows.` is not
`Windows`, and an 8.3 short name (`C:\\WINDOW~1`) cannot be resolved without the disk, so it
never matches: such a file is analysed rather than skipped. A POSIX path with `..` never matches
either, since a symbolic link before it would take it elsewhere; nor does an alternate data
stream (`C:\\Windows\\Tasks:x.exe`).

The built-in table is narrow on purpose. It trusts a folder only where an unprivileged user
cannot write: the files directly in `C:\\Windows` and `System32`/`SysWOW64`, not their subfolders,
many of which users or services can write (`Temp`, `Tasks`, `spool\\drivers\\color`, the SYSTEM
profile in `System32\\config\\systemprofile`, where malware running as SYSTEM drops its files).
An attacker with administrator rights can still place a file in a trusted folder; the rule
trusts locations, not signatures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from joedefender.domain.platforms import Platform
from joedefender.domain.windows_paths import WindowsPath, WindowsPathError, ascii_upper, bad_name

MAX_RULE_LENGTH = 1_000

POSIX = frozenset({Platform.LINUX, Platform.MACOS})

# Each rule with the reason it is there. `System32`/`SysWOW64`: the files directly in them and the
# subfolders that hold only Windows programs; `Sysnative` is how 32-bit programs name System32.
DEFAULT_RULES: tuple[str, ...] = (
    "C:\\Windows\\*",  # explorer.exe, regedit.exe, hh.exe… (not Temp, Tasks, tracing below it)
    "C:\\Windows\\System32\\*",
    "C:\\Windows\\System32\\wbem\\*",  # wmic.exe, WmiPrvSE.exe
    "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\*",  # powershell.exe
    "C:\\Windows\\System32\\inetsrv\\*",  # IIS's w3wp.exe
    "C:\\Windows\\SysWOW64\\*",
    "C:\\Windows\\SysWOW64\\wbem\\*",
    "C:\\Windows\\SysWOW64\\WindowsPowerShell\\v1.0\\*",
    "C:\\Windows\\SysWOW64\\inetsrv\\*",
    "C:\\Windows\\Sysnative\\*",
    "C:\\Windows\\WinSxS\\**",  # the component store: only TrustedInstaller writes there
    "C:\\Windows\\Microsoft.NET\\Framework\\*\\*",  # InstallUtil, RegAsm, RegSvcs, csc, MSBuild
    "C:\\Windows\\Microsoft.NET\\Framework64\\*\\*",
    "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\**",  # Defender's updated platform
    "C:\\Program Files\\Windows Defender\\**",
    "C:\\Program Files (x86)\\Windows Defender\\**",
    "C:\\Program Files\\Windows Defender Advanced Threat Protection\\**",  # the EDR sensor
    "linux:/usr/bin/*",
    "linux:/usr/sbin/*",
    "linux:/bin/*",
    "linux:/sbin/*",
    "linux:/usr/lib/**",
    "linux:/usr/lib32/**",
    "linux:/usr/lib64/**",
    "linux:/usr/libx32/**",
    "linux:/usr/libexec/**",
    "linux:/lib/**",
    "linux:/lib64/**",
    "linux:/opt/microsoft/mdatp/**",  # Defender for Endpoint on Linux
    "macos:/System/**",  # the sealed system volume…
    "!macos:/System/Volumes/**",  # …but not the volumes mounted below it: Data holds the users' files
    "macos:/usr/bin/*",
    "macos:/usr/sbin/*",
    "macos:/usr/libexec/**",
    "macos:/usr/lib/**",
    "macos:/bin/*",
    "macos:/sbin/*",
)


class OsBinaryRuleError(ValueError):
    """A rule that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class OsBinaryRule:
    text: str
    platforms: frozenset[Platform]
    pattern: tuple[str, ...]  # the drive (Windows) then the segments, ASCII upper-cased on Windows
    exception: bool

    @classmethod
    def parse(cls, text: str) -> OsBinaryRule:
        if len(text) > MAX_RULE_LENGTH:
            raise OsBinaryRuleError(f"OS binary rule longer than {MAX_RULE_LENGTH} characters: {text[:60]!r}…")
        rule = text.strip()
        exception = rule.startswith("!")
        rule = rule[1:] if exception else rule
        platforms, path = _platforms(rule)
        if not path:
            raise OsBinaryRuleError(f"empty OS binary rule: {text!r}")
        if path.startswith("/"):
            pattern = _posix_pattern(text, path)
            return cls(text, platforms or POSIX, pattern, exception)
        if platforms:
            raise OsBinaryRuleError(f"OS binary rule {text!r}: the linux:/macos: prefix is for POSIX paths")
        return cls(text, frozenset({Platform.WINDOWS}), _windows_pattern(text, path), exception)

    def matches(self, key: tuple[str, ...]) -> bool:
        """Whether a path (drive and segments on Windows, segments on POSIX) falls under this rule."""
        if self.pattern[-1] == "**":
            head = self.pattern[:-1]
            return len(key) > len(head) and _same(head, key[: len(head)])
        return len(key) == len(self.pattern) and _same(self.pattern, key)


def _same(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    return all(want in ("*", got) for want, got in zip(pattern, key, strict=True))


def _platforms(rule: str) -> tuple[frozenset[Platform], str]:
    for prefix, platform in (("linux:", Platform.LINUX), ("macos:", Platform.MACOS)):
        if rule.lower().startswith(prefix):
            return frozenset({platform}), rule[len(prefix) :]
    return frozenset(), rule


def _windows_pattern(text: str, path: str) -> tuple[str, ...]:
    drive, *names = path.split("\\")
    if "/" in path or not (len(drive) == 2 and drive[0].isascii() and drive[0].isalpha() and drive[1] == ":"):
        raise OsBinaryRuleError(f"OS binary rule {text!r} is not an absolute path like C:\\Folder\\*")
    _check_segments(text, names)
    for name in names:
        if name not in ("*", "**") and (bad_name(name) or name.endswith((".", " "))):
            raise OsBinaryRuleError(f"OS binary rule {text!r}: {name!r} cannot be the name of a Windows folder or file")
    return (drive.upper(), *(ascii_upper(name) for name in names))


def _posix_pattern(text: str, path: str) -> tuple[str, ...]:
    segments = path[1:].split("/")
    _check_segments(text, segments)
    return tuple(segments)


def _check_segments(text: str, segments: list[str]) -> None:
    if not segments or any(segment in ("", ".", "..") for segment in segments):
        raise OsBinaryRuleError(f"OS binary rule {text!r}: empty, '.' or '..' folder names are not allowed")
    for index, segment in enumerate(segments):
        if "*" in segment and segment not in ("*", "**"):
            raise OsBinaryRuleError(f"OS binary rule {text!r}: '*' stands alone for a whole name, as in C:\\Folder\\*")
        if segment == "**" and index != len(segments) - 1:
            raise OsBinaryRuleError(f"OS binary rule {text!r}: '**' may only end a rule")
    if "\0" in text:
        raise OsBinaryRuleError("OS binary rule contains a NUL character")


@dataclass(frozen=True)
class OsBinaryRules:
    """The built-in table plus the user's rules; a path is an OS binary when a rule covers it and no
    exception does."""

    rules: tuple[OsBinaryRule, ...]

    @classmethod
    def default(cls) -> OsBinaryRules:
        return _DEFAULT

    @classmethod
    def with_extra(cls, extra: Iterable[str]) -> OsBinaryRules:
        """The built-in table and `extra` (the setting); OsBinaryRuleError names the first bad rule."""
        added = tuple(OsBinaryRule.parse(text) for text in extra if text.strip())
        return cls(_DEFAULT.rules + added)

    def match(self, path: str, platform: Platform | None = None) -> OsBinaryRule | None:
        """The rule that makes `path` an OS binary on `platform`, or None. With no platform a POSIX
        path must be an OS binary on both Linux and macOS."""
        key, platforms = _key(path, platform)
        if key is None:
            return None
        found: OsBinaryRule | None = None
        for wanted in platforms:
            rule = self._match_on(key, wanted)
            if rule is None:
                return None
            found = found or rule
        return found

    def _match_on(self, key: tuple[str, ...], platform: Platform) -> OsBinaryRule | None:
        found: OsBinaryRule | None = None
        for rule in self.rules:
            if platform in rule.platforms and rule.matches(key):
                if rule.exception:
                    return None
                found = found or rule
        return found


def _key(path: str, platform: Platform | None) -> tuple[tuple[str, ...] | None, tuple[Platform, ...]]:
    if path.startswith("/"):
        if platform is Platform.WINDOWS:
            return None, ()
        segments = [segment for segment in path[1:].split("/") if segment not in ("", ".")]
        if not segments or ".." in segments or "\0" in path:
            return None, ()
        return tuple(segments), (platform,) if platform else (Platform.LINUX, Platform.MACOS)
    if platform not in (None, Platform.WINDOWS):
        return None, ()
    try:
        return WindowsPath.on_disk(path).key, (Platform.WINDOWS,)
    except WindowsPathError:
        return None, ()


_DEFAULT = OsBinaryRules(tuple(OsBinaryRule.parse(text) for text in DEFAULT_RULES))
