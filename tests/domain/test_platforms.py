"""The platform of a device (osPlatform, else the evidence path's form) and POSIX evidence paths."""

from __future__ import annotations

import pytest

from joedefender.domain.alerts import Alert, Evidence
from joedefender.domain.jobs import Candidate
from joedefender.domain.liveresponse import Machine
from joedefender.domain.platforms import (
    Platform,
    decide_platform,
    live_response_blocker,
    platform_from_os,
    posix_path,
    windows_path,
)


@pytest.mark.parametrize(
    ("value", "platform"),
    [
        ("Windows10", Platform.WINDOWS),
        ("Windows11", Platform.WINDOWS),
        ("WindowsServer2019", Platform.WINDOWS),
        ("Windows Server 2012 R2", Platform.WINDOWS),
        ("windows7", Platform.WINDOWS),
        ("Ubuntu", Platform.LINUX),
        ("debian", Platform.LINUX),
        ("RedHatEnterpriseLinux", Platform.LINUX),
        ("CentOS", Platform.LINUX),
        ("SuseLinux", Platform.LINUX),
        ("Linux", Platform.LINUX),
        ("LINUX", Platform.LINUX),
        ("macOS", Platform.MACOS),
        ("MacOs", Platform.MACOS),
        ("mac os", Platform.MACOS),
        ("iOS", None),
        ("Android", None),
        ("Plan9", None),
        ("", None),
        (None, None),
    ],
)
def test_os_platform_spellings(value: str | None, platform: Platform | None) -> None:
    assert platform_from_os(value) is platform


def test_os_platform_decides_first_and_says_so() -> None:
    decision = decide_platform("Ubuntu", "C:\\Windows\\x.exe")
    assert (decision.platform, decision.rule) == (Platform.LINUX, "osPlatform")
    assert decision.reason == "osPlatform 'Ubuntu' is Linux"


def test_an_unknown_os_with_a_windows_path_is_windows_and_the_history_says_why() -> None:
    for path in ("C:\\Users\\a\\x.exe", "d:/data/x.exe", "\\\\server\\share\\x.exe"):
        decision = Machine("m", True, os_platform="Plan9").platform_for(path)
        assert (decision.platform, decision.rule) == (Platform.WINDOWS, "windows path"), path
        assert "'Plan9' names no platform we know" in decision.reason
        assert "is a Windows path" in decision.reason


def test_an_unknown_os_with_a_posix_path_is_linux_or_macos_and_the_history_says_why() -> None:
    linux = Machine("m", True).platform_for("/srv/www/shell.php")
    assert (linux.platform, linux.rule) == (Platform.LINUX, "posix path")
    assert (
        linux.reason
        == "Defender gave no osPlatform; the evidence path '/srv/www/shell.php' is a POSIX path, taken for Linux"
    )
    mac = Machine("m", True, os_platform="Darwin?").platform_for("/Users/bob/Downloads/x")
    assert (mac.platform, mac.rule) == (Platform.MACOS, "posix path")


def test_unknown_everything_is_windows_as_before_and_mobile_is_unsupported() -> None:
    assert decide_platform("Plan9", None).platform is Platform.WINDOWS
    assert decide_platform("Plan9", None).rule == "default"
    ios = decide_platform("iOS", "/var/mobile/x")
    assert ios.platform is None
    assert "does not support" in ios.reason


def test_reasons_show_attacker_text_escaped_and_bounded() -> None:
    reason = decide_platform("evil\u202eos\n", "/tmp/" + "a" * 500 + "\nfake line").reason
    assert "\n" not in reason
    assert "\u202e" not in reason
    assert len(reason) < 300


def test_posix_paths_are_joined_without_windows_rules() -> None:
    assert posix_path("/home/alice/", "a\\b.sh") == "/home/alice/a\\b.sh"
    assert posix_path("/", "x") == "/x"
    assert windows_path("C:\\x\\", "y.exe") == "C:\\x\\y.exe"
    for directory, name in (("relative/dir", "x"), ("/a", "b/c"), ("/a", ".."), ("/a", ""), ("", "x"), ("/a", "x\0")):
        assert posix_path(directory, name) is None


def test_evidence_and_candidates_give_the_path_for_the_devices_platform() -> None:
    evidence = Evidence(entity_type="File", sha256="a" * 64, file_name="shell.php", file_path="/var/www/up")
    assert evidence.path_on(Platform.LINUX) == "/var/www/up/shell.php"
    assert evidence.path == "/var/www/up\\shell.php"  # the Windows join, as before
    candidate = Candidate.sighted(Alert(id="a1", machine_id="m1"), evidence)
    assert candidate is not None
    assert candidate.path_on(Platform.MACOS) == "/var/www/up/shell.php"
    assert candidate.path_on(Platform.WINDOWS) == "/var/www/up\\shell.php"
    stored_before = Candidate.model_validate({"machine_id": "m1", "alert_id": "a1", "path": "C:\\x\\y.exe"})
    assert stored_before.path_on(Platform.WINDOWS) == "C:\\x\\y.exe"
    assert stored_before.path_on(Platform.LINUX) is None


def test_agents_below_the_live_response_minimum_are_named() -> None:
    assert live_response_blocker(Platform.LINUX, "101.45.12") is not None
    assert live_response_blocker(Platform.LINUX, "101.23092.0012") is None
    assert live_response_blocker(Platform.MACOS, "101.43.84") is None
    assert live_response_blocker(Platform.MACOS, None) is None
    assert live_response_blocker(Platform.WINDOWS, "1.0") is None
