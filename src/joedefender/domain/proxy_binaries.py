"""Windows binaries that run a file named on their command line, and how each one finds that file.

One entry per binary in `PROXY_BINARIES`: its documented syntax, which argument names the file,
and whether a relative path is opened from the process's working directory (`cwd`). Where a
binary finds a relative name by a search (LoadLibrary's DLL search order for rundll32 and
regsvr32; cmd's PATH and PATHEXT search) or its rules are not documented (mshta), a relative path
is refused: we could name the wrong file. No binary resolves against its own image folder in a
way we could rely on (LoadLibrary looks there first, then elsewhere).

The readers take argv without argv[0] (read with each of the Windows argument rules, see
`command_line`), except cmd's, which reads the raw line with cmd's own rules (`cmd_line`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from joedefender.domain.cmd_line import BUILT_INS, cmd_command
from joedefender.domain.command_line import CommandLineError
from joedefender.domain.powershell_line import pwsh, windows_powershell
from joedefender.domain.proxy_findings import LOAD_LIBRARY, PATHEXT_SEARCH, Finding, Named, Nested, Nothing
from joedefender.domain.windows_paths import ascii_lower, file_name, has_scheme

# Windows DLLs whose entry point runs, opens or loads the file in its arguments (the LOLBAS project's
# rundll32 entries): (DLL, entry) -> (which argument, 0 the first and -1 the last; whether the file
# name ends at a comma). Entry names are case-sensitive, as GetProcAddress reads them.
RUNDLL32_RUNNERS: dict[tuple[str, str], tuple[int, bool]] = {
    ("url.dll", "FileProtocolHandler"): (0, False),
    ("url.dll", "OpenURL"): (0, False),
    ("url.dll", "OpenURLA"): (0, False),
    ("shell32.dll", "ShellExec_RunDLL"): (0, False),
    ("shell32.dll", "ShellExec_RunDLLA"): (0, False),
    ("shell32.dll", "Control_RunDLL"): (0, True),
    ("shell32.dll", "Control_RunDLLAsUser"): (0, True),
    ("zipfldr.dll", "RouteTheCall"): (0, False),
    ("advpack.dll", "RegisterOCX"): (0, False),
    ("ieadvpack.dll", "RegisterOCX"): (0, False),
    ("advpack.dll", "LaunchINFSection"): (0, True),
    ("ieadvpack.dll", "LaunchINFSection"): (0, True),
    ("pcwutl.dll", "LaunchApplication"): (0, False),
    ("setupapi.dll", "InstallHinfSection"): (-1, False),
    ("desk.cpl", "InstallScreenSaver"): (0, False),
}
MSIEXEC_FILE_OPTIONS = frozenset({"i", "package", "a", "j", "ju", "jm", "update", "p", "y", "z"})


ArgvReader = Callable[[Sequence[str]], list[Finding]]


@dataclass(frozen=True)
class ProxyBinary:
    name: str
    syntax: str
    finds: str  # how the file is found, as the README's table says it
    read: ArgvReader | None = None  # argv[1:] -> findings
    read_line: Callable[[str], list[Finding]] | None = None  # the raw line -> findings (cmd)


def _rundll32(args: Sequence[str]) -> list[Finding]:
    if not args:
        return [Nothing("is given no DLL")]
    dll, _, entry = args[0].partition(",")
    if "," in entry:
        raise CommandLineError("more than one comma before the entry point", ambiguous=True)
    if dll.startswith("-"):
        return [Nothing(f"starts a COM object ({dll[:20]}), not a file")]
    module = ascii_lower(file_name(dll))
    runner = RUNDLL32_RUNNERS.get((module if "." in module else module + ".dll", entry.strip()))
    found: list[Finding] = []
    if runner is None or ("\\" in dll or "/" in dll):
        found.append(Named(dll, needs_extension=LOAD_LIBRARY))
    if runner is not None:
        which, to_comma = runner
        rest = args[1:]
        if not rest:
            return [*found, Nothing(f"is given no file for {entry}")]
        named = rest[which]
        found.append(Named(named.partition(",")[0] if to_comma else named))
    return found


def _regsvr32(args: Sequence[str]) -> list[Finding]:
    found: list[Finding] = []
    for arg in args:
        if arg[:1] in ("/", "-"):
            option = arg[1:]
            if option[:2].lower() == "i:" and _is_location(option[2:]):
                found.append(Named(option[2:]))  # DllInstall's string: scrobj.dll runs the scriptlet it names
            continue
        found.append(Named(arg, needs_extension=LOAD_LIBRARY))
    return found or [Nothing("is given no DLL")]


def _is_location(text: str) -> bool:
    """A string that names a file or a URL rather than a setup keyword: absolute, network or URL."""
    return text[1:3] in (":\\", ":/") or text.startswith(("\\\\", "//")) or has_scheme(text)


def _first_argument(args: Sequence[str]) -> list[Finding]:
    return [Named(args[0])] if args else [Nothing("is given no file")]


def _windows_script_host(args: Sequence[str]) -> list[Finding]:
    # Host options take two slashes (WSH documentation); a single-slash one is skipped too, since
    # whether the host reads it or tries it as the script, the script can only be what follows.
    script = next((arg for arg in args if not arg.startswith("/")), None)
    return [Named(script, cwd=True)] if script is not None else [Nothing("is given no script")]


def _msiexec(args: Sequence[str]) -> list[Finding]:
    found: list[Finding] = []
    for index, arg in enumerate(args[:-1]):
        if arg[:1] in ("/", "-") and arg[1:].lower() in MSIEXEC_FILE_OPTIONS:
            value = args[index + 1]
            product_code = value.startswith("{") and value.endswith("}")
            found.append(Nothing("is given a product code, not a file") if product_code else Named(value, cwd=True))
    return found or [Nothing("is given no package, patch or module")]


def _installutil(args: Sequence[str]) -> list[Finding]:
    found: list[Finding] = []
    strong_names = False
    for arg in args:
        if arg[:1] in ("/", "-"):
            strong_names = strong_names or arg[1:].lower().startswith("assemblyname")
        elif strong_names:
            found.append(Nothing("is given an assembly by strong name (from the global assembly cache), not a file"))
        else:
            found.append(Named(arg, cwd=True))
    return found or [Nothing("is given no assembly")]


def _first_non_option(args: Sequence[str]) -> list[Finding]:
    assembly = next((arg for arg in args if arg[:1] not in ("/", "-")), None)
    return [Named(assembly, cwd=True)] if assembly is not None else [Nothing("is given no assembly")]


def _cmd(line: str) -> list[Finding]:
    command = cmd_command(line)
    if command is None:
        return [Nothing("is told to run no command")]
    name = ascii_lower(file_name(command.program))
    if name in BUILT_INS:
        return [Nothing(f"runs its built-in command {name!r}")]
    inner = proxy_binary(name)
    if inner is not None:
        if inner.read is None:
            raise CommandLineError("cmd starting cmd")
        return [Nested(inner.name, command.line)]
    return [Named(command.program, needs_extension=PATHEXT_SEARCH)]


_WSH = "the first argument that is not a // host option; relative: working directory"
_NET = "the first argument that is not a /option; relative: working directory"
PROXY_BINARIES: dict[str, ProxyBinary] = {
    entry.name: entry
    for entry in (
        ProxyBinary(
            "rundll32.exe",
            "rundll32 <dll>,<entry>|#<ordinal> [arguments]",
            "the DLL before the first comma, and for Windows DLLs whose entry runs a file (url.dll,"
            "FileProtocolHandler, shell32.dll,ShellExec_RunDLL…) that file; relative: refused",
            read=_rundll32,
        ),
        ProxyBinary(
            "regsvr32.exe",
            "regsvr32 [/u] [/s] [/n] [/i[:cmdline]] <dll>",
            "each DLL, and the /i: string when it is a path or URL (scrobj.dll runs it); relative: refused",
            read=_regsvr32,
        ),
        ProxyBinary(
            "mshta.exe",
            "mshta <.hta path or URL> [arguments]",
            "the first argument (javascript:, vbscript:, http: are URLs); relative: refused",
            read=_first_argument,
        ),
        ProxyBinary("wscript.exe", "wscript [//options] <script> [arguments]", _WSH, read=_windows_script_host),
        ProxyBinary("cscript.exe", "cscript [//options] <script> [arguments]", _WSH, read=_windows_script_host),
        ProxyBinary(
            "powershell.exe",
            "powershell [-switches] -File <script> | -Command <command>",
            "the -File script (relative: working directory), or the .ps1 a -Command or a first bare argument starts "
            "by running (relative: refused)",
            read=windows_powershell,
        ),
        ProxyBinary(
            "pwsh.exe",
            "pwsh [-switches] [-File] <script> | -Command <command>",
            "as powershell.exe, but a first bare argument is the -File script",
            read=pwsh,
        ),
        ProxyBinary(
            "cmd.exe",
            "cmd [/switches] /c|/k <command>",
            "the program of the first command, or the file a proxy binary it starts runs; relative: refused",
            read_line=_cmd,
        ),
        ProxyBinary(
            "msiexec.exe",
            "msiexec /i|/package|/a|/j[u|m]|/update|/p|/y|/z <file> [options]",
            "the file after each of those options (not a {product code}); relative: working directory",
            read=_msiexec,
        ),
        ProxyBinary(
            "installutil.exe",
            "installutil [/options] <assembly> …",
            "every argument that is not an /option (not after /AssemblyName); relative: working directory",
            read=_installutil,
        ),
        ProxyBinary("regasm.exe", "regasm <assembly> [/options]", _NET, read=_first_non_option),
        ProxyBinary("regsvcs.exe", "regsvcs [/options] <assembly>", _NET, read=_first_non_option),
    )
}


def proxy_binary(image: str) -> ProxyBinary | None:
    """The table entry for an image path or file name (`rundll32`, `C:\\…\\RUNDLL32.EXE`), if any."""
    name = ascii_lower(file_name(image))
    return PROXY_BINARIES.get(name) or PROXY_BINARIES.get(name + ".exe")
