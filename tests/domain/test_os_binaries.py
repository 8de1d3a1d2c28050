"""Operating-system binaries by folder: the built-in table, the tricks it must not fall for, user rules."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from joedefender.domain.os_binaries import DEFAULT_RULES, OsBinaryRuleError, OsBinaryRules
from joedefender.domain.platforms import Platform
from joedefender.domain.windows_paths import PathProblem, WindowsPath, WindowsPathError

RULES = OsBinaryRules.default()
WINDOWS, LINUX, MACOS = Platform.WINDOWS, Platform.LINUX, Platform.MACOS


@pytest.mark.parametrize(
    ("path", "platform", "os_binary"),
    [
        ("C:\\Windows\\SysWOW64\\rundll32.exe", WINDOWS, True),  # Defender's own alert example
        ("C:\\Windows\\System32\\rundll32.exe", None, True),
        ("C:\\Windows\\explorer.exe", WINDOWS, True),
        ("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", WINDOWS, True),
        ("C:\\Windows\\System32\\wbem\\WmiPrvSE.exe", WINDOWS, True),
        ("C:\\Windows\\WinSxS\\amd64_microsoft-windows-rundll32_31bf_10.0.1_none_1\\rundll32.exe", WINDOWS, True),
        ("C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\InstallUtil.exe", WINDOWS, True),
        ("C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.25010.11-0\\MsMpEng.exe", WINDOWS, True),
        ("C:\\Program Files\\Windows Defender\\MpCmdRun.exe", WINDOWS, True),
        ("c:\\program files\\windows defender advanced threat protection\\SenseIR.exe", WINDOWS, True),
        # the tricks
        ("C:\\Windows\\..\\Users\\x.exe", WINDOWS, False),
        ("C:\\Windows\\System32\\..\\..\\Users\\Public\\x.exe", WINDOWS, False),
        ("C:\\Users\\x\\..\\..\\Windows\\System32\\calc.exe", WINDOWS, True),  # Win32 resolves .. without the disk
        ("\\\\?\\C:\\Windows\\System32\\rundll32.exe", WINDOWS, True),
        ("\\\\?\\C:\\Windows\\WinSxS\\..\\..\\Users\\x.exe", WINDOWS, False),  # \\?\ resolves nothing
        ("\\\\.\\C:\\Windows\\System32\\rundll32.exe", WINDOWS, True),
        ("C:/windows/system32/RUNDLL32.EXE", WINDOWS, True),
        ("C:\\Windows\\\\System32\\\\rundll32.exe", WINDOWS, True),
        ("C:\\Windows.old\\x.exe", WINDOWS, False),
        ("C:\\Windows.old\\System32\\x.exe", WINDOWS, False),
        ("C:\\Windows \\System32\\x.exe", WINDOWS, False),  # the mock folder with a trailing space
        ("C:\\Windows.\\System32\\x.exe", WINDOWS, False),  # a real folder named "Windows." on disk
        ("C:\\WINDOW~1\\System32\\x.exe", WINDOWS, False),  # 8.3 names cannot be resolved here
        ("C:\\Windows\\Tasks:x.exe", WINDOWS, False),  # an alternate data stream on a folder
        ("C:\\Windows\\Temp\\x.exe", WINDOWS, False),
        ("C:\\Windows\\Tasks\\x.exe", WINDOWS, False),
        ("C:\\Windows\\System32\\Tasks\\x.exe", WINDOWS, False),
        ("C:\\Windows\\System32\\spool\\drivers\\color\\x.exe", WINDOWS, False),
        ("C:\\Windows\\System32\\config\\systemprofile\\AppData\\Local\\Temp\\x.exe", WINDOWS, False),
        ("C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\Temporary ASP.NET Files\\x.dll", WINDOWS, False),
        ("D:\\Windows\\System32\\x.exe", WINDOWS, False),
        ("\\\\server\\C$\\Windows\\System32\\x.exe", WINDOWS, False),
        ("\\\\?\\UNC\\server\\C$\\Windows\\System32\\x.exe", WINDOWS, False),
        ("Windows\\System32\\x.exe", WINDOWS, False),
        ("C:\\Windows\\System32\\rundll32.exe", LINUX, False),
        ("C:\\Window\u017f\\System32\\x.exe", WINDOWS, False),  # only ASCII letters fold
        ("C:\\Users\\x\\AppData\\Local\\Temp\\QuickUpdater.exe", WINDOWS, False),
        # POSIX: exact, and .. never matches
        ("/usr/bin/curl", LINUX, True),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", LINUX, True),
        ("/opt/microsoft/mdatp/sbin/wdavdaemon", LINUX, True),
        ("/usr/local/bin/x", LINUX, False),
        ("/tmp/x", LINUX, False),
        ("/USR/BIN/curl", LINUX, False),
        ("/usr/bin/../../tmp/x", LINUX, False),
        ("/usr/bin/../bin/curl", LINUX, False),
        ("//usr//bin/./curl", LINUX, True),
        ("/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder", MACOS, True),
        ("/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder", LINUX, False),
        ("/System/Volumes/Data/Users/x/Downloads/a.out", MACOS, False),
        ("/usr/libexec/xpcproxy", MACOS, True),
        ("/usr/bin/curl", None, True),  # an OS binary on both
        ("/opt/microsoft/mdatp/sbin/wdavdaemon", None, False),  # on Linux only
        ("/usr/bin/curl", WINDOWS, False),
    ],
)
def test_the_built_in_table(path: str, platform: Platform | None, os_binary: bool) -> None:
    assert (RULES.match(path, platform) is not None) is os_binary


def test_the_match_says_which_rule() -> None:
    rule = RULES.match("C:\\Windows\\SysWOW64\\rundll32.exe")
    assert rule is not None
    assert rule.text == "C:\\Windows\\SysWOW64\\*"


def test_extra_rules_add_folders_and_exceptions() -> None:
    rules = OsBinaryRules.with_extra(
        [
            "D:\\Windows\\System32\\*",
            "!C:\\Windows\\System32\\evil.exe",
            "linux:/opt/vendor/bin/*",
            "!/usr/bin/sudo",
            "   ",
        ]
    )
    assert rules.match("d:\\windows\\system32\\cmd.exe") is not None
    assert rules.match("C:\\Windows\\System32\\EVIL.EXE") is None
    assert rules.match("C:\\Windows\\System32\\cmd.exe") is not None
    assert rules.match("/opt/vendor/bin/tool", LINUX) is not None
    assert rules.match("/opt/vendor/bin/tool", MACOS) is None
    assert rules.match("/usr/bin/sudo", LINUX) is None
    assert rules.match("/usr/bin/sudo", MACOS) is None
    assert OsBinaryRules.default().match("C:\\Windows\\System32\\evil.exe") is not None  # the default is unchanged


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ("Windows\\System32\\*", "not an absolute path"),
        ("C:Windows\\*", "not an absolute path"),
        ("C:/Windows/*", "not an absolute path"),
        ("\\\\server\\share\\*", "not an absolute path"),
        ("\\\\?\\C:\\Windows\\*", "not an absolute path"),
        ("C:\\Win*\\x.exe", "'*' stands alone"),
        ("/usr/*bin/x", "'*' stands alone"),
        ("C:\\Windows\\**\\x.exe", "'\\*\\*' may only end a rule"),
        ("C:\\Windows\\..\\Users\\*", "'\\.\\.'"),
        ("/usr/./bin/*", "'\\.'"),
        ("/usr//bin/*", "empty"),
        ("C:\\Windows \\*", "cannot be the name"),
        ("C:\\Windows.\\*", "cannot be the name"),
        ("C:\\Windows\\Tasks:x\\*", "cannot be the name"),
        ("C:\\a<b\\*", "cannot be the name"),
        ("linux:C:\\Windows\\*", "prefix is for POSIX paths"),
        ("!", "empty"),
        ("/", "empty"),
        ("x" * 1_001, "longer than 1000"),
    ],
)
def test_a_bad_rule_is_refused_with_a_message_naming_it(rule: str, says: str) -> None:
    with pytest.raises(OsBinaryRuleError, match=says) as caught:
        OsBinaryRules.with_extra(["C:\\Fine\\*", rule])
    assert repr(rule) in str(caught.value) or len(rule) > 1_000


def test_every_built_in_rule_is_in_the_documented_syntax() -> None:
    assert len(OsBinaryRules.default().rules) == len(DEFAULT_RULES)


@given(st.text(max_size=120), st.sampled_from([None, WINDOWS, LINUX, MACOS]))
def test_any_path_is_matched_or_not_without_an_error(path: str, platform: Platform | None) -> None:
    RULES.match(path, platform)


@given(st.text(max_size=60))
def test_any_rule_text_is_accepted_or_refused_with_the_rule_error(text: str) -> None:
    with contextlib.suppress(OsBinaryRuleError):
        OsBinaryRules.with_extra([text])


@pytest.mark.parametrize(
    ("text", "win32", "on_disk"),
    [
        ("C:\\temp\\x.dll.", "C:\\temp\\x.dll", "C:\\temp\\x.dll."),
        ("C:\\temp\\x.dll . .", "C:\\temp\\x.dll", "C:\\temp\\x.dll . ."),
        ("C:\\Windows.\\x.exe", "C:\\Windows\\x.exe", "C:\\Windows.\\x.exe"),
        ("C:\\Windows..\\x.exe", "C:\\Windows..\\x.exe", "C:\\Windows..\\x.exe"),
        ("C:\\Windows \\x.exe", "C:\\Windows \\x.exe", "C:\\Windows \\x.exe"),
        ("c:/a//b/./c/../x.exe", "C:\\a\\b\\x.exe", "C:\\a\\b\\x.exe"),
        ("C:\\..\\..\\x.exe", "C:\\x.exe", "C:\\x.exe"),
        ("\\\\.\\C:\\a\\x.exe", "C:\\a\\x.exe", "C:\\a\\x.exe"),
        ("\\\\?\\C:\\a.\\x.exe ", "C:\\a.\\x.exe ", "C:\\a.\\x.exe "),
    ],
)
def test_win32_normalisation_and_the_on_disk_spelling(text: str, win32: str, on_disk: str) -> None:
    assert WindowsPath.win32(text).text == win32
    assert WindowsPath.on_disk(text).text == on_disk


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", PathProblem.EMPTY),
        ("x.dll", PathProblem.RELATIVE),
        ("..\\x.dll", PathProblem.RELATIVE),
        ("C:x.dll", PathProblem.DRIVE_RELATIVE),
        ("\\x.dll", PathProblem.DRIVE_RELATIVE),
        ("\\\\server\\share\\x.dll", PathProblem.UNC),
        ("//server/share/x.dll", PathProblem.UNC),
        ("\\\\?\\UNC\\server\\share\\x.dll", PathProblem.UNC),
        ("https://example.com/x.hta", PathProblem.URL),
        ("javascript:alert(1)", PathProblem.URL),
        ("\\\\.\\pipe\\x", PathProblem.DEVICE),
        ("\\\\?\\Volume{01234567-89ab-cdef-0123-456789abcdef}\\x.dll", PathProblem.DEVICE),
        ("C:\\temp\\file.txt:evil.dll", PathProblem.STREAM),
        ("C:\\temp\\", PathProblem.INVALID),
        ("C:\\temp\\a|b.dll", PathProblem.INVALID),
        ("C:\\temp\\...", PathProblem.INVALID),
        ("\\\\?\\C:\\temp\\..\\x.dll", PathProblem.INVALID),
    ],
)
def test_what_is_not_an_absolute_local_path_says_why(text: str, problem: PathProblem) -> None:
    with pytest.raises(WindowsPathError) as caught:
        WindowsPath.win32(text)
    assert caught.value.problem is problem
