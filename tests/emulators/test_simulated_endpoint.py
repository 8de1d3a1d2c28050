"""The MDE emulator's simulated endpoint: how it binds the collection script's arguments and
what it does with them, read back through the connector's contract (which the simulation is
written independently of)."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator, Sequence

import pytest

from joedefender.endpoint import contract
from joedefender.endpoint.contract import (
    CollectRequest,
    ScriptOutcome,
    format_args,
    format_locate_args,
    sample_path,
)
from joedefender.endpoint.locate_contract import LocateOutcome
from joedefender.formats.defender_quarantine import decode_resource, parse_entries
from joedefender_emulators.mde import endpoint_script
from joedefender_emulators.mde import quarantine as store
from joedefender_emulators.mde.endpoint_script import (
    EndpointScriptError,
    FolderState,
    QuarantineFile,
    ScriptRun,
    parse_args,
    simulate,
    simulate_locate,
)

SHA = hashlib.sha256(b"sample").hexdigest()
SYSTEM, USER, USERS = endpoint_script.SYSTEM_SID, "S-1-5-21-1-2-3-1001", "S-1-5-32-545"


# ---------------------------------------------------------------- the two descriptions agree


def test_the_simulated_script_and_the_contract_describe_the_same_script() -> None:
    assert endpoint_script.SCRIPT_NAME == contract.SCRIPT_NAME
    assert endpoint_script.WORK_ROOT == contract.WORK_ROOT
    assert f"{contract.WORK_ROOT}\\job-1\\{endpoint_script.SAMPLE_FILE_NAME}" == sample_path("job-1")
    assert endpoint_script.DEFANG_KEY == contract.DEFANG_KEY
    assert (endpoint_script.EXIT_FOUND, endpoint_script.EXIT_ERROR, endpoint_script.EXIT_NOT_FOUND) == (
        contract.EXIT_FOUND,
        contract.EXIT_ERROR,
        contract.EXIT_NOT_FOUND,
    )
    assert endpoint_script.OUTPUT_VERSION == contract.OUTPUT_VERSION
    assert endpoint_script.SCRIPT_MODES == contract.MODES
    assert list(endpoint_script.SCRIPT_PARAMETERS) == [
        (r.name, r.min_length, r.max_length, r.pattern) for r in contract.PARAMETER_RULES.values()
    ]
    assert list(endpoint_script.LOCATE_PARAMETERS) == [
        (r.name, r.min_length, r.max_length, r.pattern) for r in contract.LOCATE_PARAMETER_RULES.values()
    ]
    assert contract.ORIGINAL_PATH_RULE.pattern == endpoint_script.ORIGINAL_PATH_PATTERN
    assert endpoint_script.LOCATE_SCRIPT_NAME == contract.LOCATE_SCRIPT_NAME
    assert endpoint_script.LOCATE_LIMIT == contract.LOCATE_LIMIT
    assert store.ROOT == contract.QUARANTINE_ROOT


@pytest.mark.parametrize(
    "outcome",
    [
        ScriptOutcome("found", SHA, 123, sample_path("job-1"), "quarantine", ""),
        ScriptOutcome("not_found", message="no quarantined file has this SHA-256"),
        ScriptOutcome("error", message='failed: C:\\o\'brien\\"x" \u4e2d'),
        ScriptOutcome("cleaned"),
        ScriptOutcome("unsafe_folder", message="C:\\ProgramData\\joedefender is a reparse point"),
    ],
)
def test_the_output_lines_are_the_same(outcome: ScriptOutcome) -> None:
    line = endpoint_script.output_line(
        outcome.status,
        sha256=outcome.sha256,
        size=outcome.size,
        path=outcome.path,
        source=outcome.source,
        message=outcome.message,
    )
    assert line == outcome.to_output_line()


@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 777])
def test_the_sample_is_defanged_the_same_way(size: int) -> None:
    content = hashlib.sha512(str(size).encode()).digest() * (size // 64 + 1)
    assert endpoint_script.defanged(content[:size]) == contract.defang(content[:size])


@pytest.mark.parametrize(
    ("request_", "complaint"),
    [
        (CollectRequest("Collect", "", SHA), "JobId must be 1 to 64"),
        (CollectRequest("Collect", "a-b" * 22, SHA), "JobId must be 1 to 64"),
        (CollectRequest("Collect", "j", "g" * 64), "Sha256 must match"),
    ],
)
def test_what_the_contract_refuses_the_simulated_script_refuses(request_: CollectRequest, complaint: str) -> None:
    with pytest.raises(contract.ContractError, match=complaint):
        format_args(request_)
    args = f"-Mode {request_.mode} -JobId {request_.job_id} -Sha256 {request_.sha256}".replace("-JobId  ", "")
    with pytest.raises(EndpointScriptError, match=r"JobId|Sha256"):
        parse_args(args)


# ---------------------------------------------------------------- binding the arguments


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ("", "Mode is missing"),
        ("-JobId j", "Mode is missing"),
        ("-Mode Cleanup", "JobId is missing"),
        ("-Mode Cleanup -JobId j -JobId k", "more than once"),
        ("-Mode Cleanup -JobId j -Force x", "cannot be found"),
        ("-Mode 'Cleanup' -JobId j", "Mode must be"),  # single quotes are literal under -File
        ("-Mode Cleanup -JobId j; calc", "positional"),
        ("-Mode Cleanup -JobId j&calc", "JobId must match"),  # no cmd.exe in between
        ("-Mode Cleanup -JobId %TEMP%", "JobId must match"),
        ("-Mode Cleanup -JobId ^j", "JobId must match"),
        ("-Mode Cleanup -JobId $(calc)", "JobId must match"),
        ("-Mode Cleanup -JobId `j", "JobId must match"),
        ("-Mode Cleanup -JobId \u00e9", "JobId must match"),
        ('-Mode Cleanup -JobId "j k"', "JobId must match"),
        ("-Mode Cleanup -JobId j extra", "positional"),
        ("-Mode Cleanup -JobId -Sha256", "Missing an argument"),
        ("-Mode Erase -JobId j", "Mode must be"),
        ("-Mode Collect -JobId j -Sha256 abc", "Sha256"),
        ("-Mode Restore -JobId j -OriginalPathHex abc", "OriginalPathHex"),
    ],
)
def test_parse_args_rejects_anything_format_args_would_not_write(args: str, complaint: str) -> None:
    with pytest.raises(EndpointScriptError, match=complaint):
        parse_args(args)


def test_parse_args_leaves_the_missing_hash_to_the_script_body() -> None:
    assert parse_args("-Mode Collect -JobId j") == {"Mode": "Collect", "JobId": "j"}


@pytest.mark.parametrize(
    "args",
    [
        '-Mode "Cleanup" -JobId j',
        "-mode cleanup -jobid j",
        "-Mo Cleanup -J j",
        "-Mode:Cleanup -JobId:j",
        '-Mode Clean"up" -JobId "j"',
    ],
)
def test_parse_args_binds_what_powershell_would_bind(args: str) -> None:
    """Quotes, a colon, other case and unambiguous prefixes mean on a Windows endpoint what they
    mean here; an emulator refusing them would hide how the connector's Args are really read."""
    assert parse_args(args) == {"Mode": "Cleanup", "JobId": "j"}


def test_parse_args_tolerates_extra_blanks() -> None:
    assert parse_args("  -Mode Cleanup   -JobId  j ") == {"Mode": "Cleanup", "JobId": "j"}


# ---------------------------------------------------------------- the RunScript result


def test_script_run_result_document_round_trip() -> None:
    run = ScriptRun(contract.EXIT_NOT_FOUND, ScriptOutcome("not_found", message="x").to_output_line() + "\n", "")
    document = run.to_result()
    assert document["script_name"] == contract.SCRIPT_NAME
    assert ScriptRun.from_result(json.loads(json.dumps(document))) == run
    assert ScriptRun.from_result({"exit_code": 0, "script_output": None, "script_errors": None}) == ScriptRun(0, "", "")
    with pytest.raises(EndpointScriptError, match="exit_code"):
        ScriptRun.from_result({"script_output": ""})
    with pytest.raises(EndpointScriptError, match="strings"):
        ScriptRun.from_result({"exit_code": 0, "script_output": 5})


# ---------------------------------------------------------------- simulate


class FakeEndpoint:
    """A Windows machine reduced to its quarantine (encrypted, by the emulator's encoder) and a
    case-insensitive file table."""

    def __init__(self, items: Sequence[tuple[str, str, bytes]]) -> None:
        self.items = [
            store.quarantine(0x80000000 + n, name, path, functools.partial(iter, [content]))
            for n, (name, path, content) in enumerate(items)
        ]
        self.files: dict[str, bytes] = {}
        self.folders: dict[str, FolderState] = {}
        self.restored: list[str] = []

    def folder(self, path: str) -> FolderState | None:
        return self.folders.get(path.lower())

    def make_folder(self, path: str, owner: str, access: tuple[str, ...]) -> None:
        self.folders.setdefault(path.lower(), FolderState(path, owner, access))

    def set_access(self, path: str, access: tuple[str, ...]) -> None:
        current = self.folders[path.lower()]
        self.folders[path.lower()] = FolderState(current.path, endpoint_script.SYSTEM_SID, access, current.junction_to)

    def resource_files(self) -> Sequence[QuarantineFile]:
        return [QuarantineFile(q.resource_path, q.resource_size) for q in self.items]

    def entries_files(self) -> Sequence[QuarantineFile]:
        return [QuarantineFile(q.entries_path, len(q.entries_bytes)) for q in self.items]

    def read_quarantine_file(self, path: str) -> Iterator[bytes]:
        entries = (iter([q.entries_bytes]) for q in self.items if q.entries_path == path)
        return next(entries, None) or next(q.resource_chunks() for q in self.items if q.resource_path == path)

    def restore(self, original_path: str, destination: str) -> list[str]:
        taken = [q for q in self.items if q.original_path.lower() == original_path.lower()]
        written = []
        for n, q in enumerate(taken):
            self.items.remove(q)
            self.restored.append(q.original_path)
            payload = store.read_payload(q.resource_chunks())
            assert payload is not None
            written.append(f"{destination}\\{n}.bin")
            self.write_file(written[-1], payload)
        return written

    def read_file(self, path: str) -> bytes | None:
        return self.files.get(path.lower())

    def write_file(self, path: str, content: bytes) -> None:
        self.files[path.lower()] = content

    def delete_tree(self, folder: str) -> None:
        prefix = folder.lower().rstrip("\\") + "\\"
        self.files = {p: c for p, c in self.files.items() if not p.startswith(prefix)}
        self.folders = {p: f for p, f in self.folders.items() if not (p + "\\").startswith(prefix)}


def _endpoint() -> FakeEndpoint:
    return FakeEndpoint(
        [
            ("Trojan:Win32/Wacatac.B!ml", r"C:\Users\a\Downloads\one.exe", b"MZ one"),
            ("Trojan:Win32/Wacatac.B!ml", r"C:\Users\a\Downloads\two.exe", b"MZ two"),
            ("Trojan:Win32/Wacatac.B!ml", r"C:\Users\b\Desktop\three.exe", b"MZ three"),
            ("Virus:DOS/EICAR_Test_File", r"C:\Windows\Temp\eicar.com", b"not really eicar"),
        ]
    )


def _collect_args(content: bytes, job: str = "job-1", mode: str = "Collect", **extra: str) -> str:
    sha = hashlib.sha256(content).hexdigest().upper()
    return format_args(CollectRequest(mode, job, sha, **extra))  # type: ignore[arg-type]


def test_simulate_collects_only_the_matching_entry() -> None:
    endpoint = _endpoint()
    run = simulate(_collect_args(b"MZ two"), endpoint)

    assert run.exit_code == contract.EXIT_FOUND
    assert run.script_errors == ""
    outcome = ScriptOutcome.from_script_output(run.script_output)
    assert outcome.status == "found"
    assert outcome.sha256 == hashlib.sha256(b"MZ two").hexdigest()
    assert outcome.size == len(b"MZ two")
    assert outcome.source == "quarantine"
    assert outcome.path == sample_path("job-1")
    assert list(endpoint.files) == [sample_path("job-1").lower()]
    stored = endpoint.files[sample_path("job-1").lower()]
    assert stored != b"MZ two"
    assert contract.Refanger().feed(stored) == b"MZ two"
    assert endpoint.restored == []


def test_simulate_collect_makes_its_folders_its_own() -> None:
    endpoint = _endpoint()
    simulate(_collect_args(b"MZ three"), endpoint)
    system, administrators = endpoint_script.SYSTEM_SID, endpoint_script.ADMINISTRATORS_SID
    assert endpoint.folder(contract.WORK_ROOT) == FolderState(contract.WORK_ROOT, system, (system, administrators))
    assert endpoint.folder(contract.job_folder("job-1")) == FolderState(contract.job_folder("job-1"), system, (system,))


OWN_ROOT = FolderState(contract.WORK_ROOT, SYSTEM, (SYSTEM, endpoint_script.ADMINISTRATORS_SID))


@pytest.mark.parametrize(
    ("planted", "complaint"),
    [
        ([FolderState(contract.WORK_ROOT, USER, (USER, USERS))], f"is owned by {USER}, not SYSTEM or Administrators"),
        ([FolderState(contract.WORK_ROOT, SYSTEM, (SYSTEM,), junction_to="C:\\Users\\u")], "is a reparse point"),
        ([OWN_ROOT, FolderState(contract.job_folder("job-1"), SYSTEM, (SYSTEM,))], "existed before this run"),
    ],
)
def test_simulate_refuses_a_folder_someone_else_made_and_touches_nothing(
    planted: list[FolderState], complaint: str
) -> None:
    endpoint = _endpoint()
    for folder in planted:
        endpoint.folders[folder.path.lower()] = folder
        endpoint.write_file(folder.path + "\\planted.txt", b"left by someone")
    before = dict(endpoint.folders), dict(endpoint.files)
    for mode, extra in (("Collect", {}), ("Restore", {"original_path": "C:\\Users\\a\\Downloads\\two.exe"})):
        run = simulate(_collect_args(b"MZ two", mode=mode, **extra), endpoint)
        assert run.exit_code == contract.EXIT_ERROR
        assert run.script_output.count("\n") == 1
        outcome = json.loads(run.script_output)
        assert outcome["status"] == endpoint_script.UNSAFE_FOLDER
        assert complaint in outcome["message"]
        assert (dict(endpoint.folders), dict(endpoint.files)) == before
    assert endpoint.restored == []


def test_simulate_not_found_writes_nothing() -> None:
    endpoint = _endpoint()
    run = simulate(_collect_args(b"not quarantined here"), endpoint)
    assert run.exit_code == contract.EXIT_NOT_FOUND
    assert ScriptOutcome.from_script_output(run.script_output).status == "not_found"
    assert endpoint.files == {}


def test_simulate_restore_takes_the_entry_out_and_leaves_only_the_defanged_match() -> None:
    endpoint = _endpoint()
    run = simulate(_collect_args(b"MZ two", mode="Restore", original_path=r"C:\Users\a\Downloads\two.exe"), endpoint)
    outcome = ScriptOutcome.from_script_output(run.script_output)
    assert (outcome.status, outcome.source) == ("found", "restore")
    assert endpoint.restored == [r"C:\Users\a\Downloads\two.exe"]
    assert list(endpoint.files) == [sample_path("job-1").lower()]  # the plaintext is gone
    assert contract.Refanger().feed(endpoint.files[sample_path("job-1").lower()]) == b"MZ two"


def test_simulate_locate_lists_the_encrypted_entries_and_writes_nothing() -> None:
    endpoint = _endpoint()
    run = simulate_locate(format_locate_args("job-1"), endpoint)
    assert run.exit_code == contract.EXIT_FOUND
    assert run.to_result()["script_name"] == contract.LOCATE_SCRIPT_NAME
    located = LocateOutcome.from_script_output(run.script_output)
    assert located.status == "located"
    assert located.language_mode == "FullLanguage"
    assert [r.path for r in located.resources] == [q.resource_path for q in endpoint.items]
    listed = [(q.entries_path, len(q.entries_bytes), q.entries_bytes) for q in endpoint.items]
    assert [(e.path, e.size, e.data) for e in located.entries] == listed  # printed: all are small
    assert endpoint.files == {}
    # Each listed Entries file names, for the product's reader, the ResourceData file of its path.
    for item in endpoint.items:
        (resource,) = parse_entries(item.entries_bytes).resources
        assert resource.path == item.original_path
        assert f"{store.ROOT}\\{resource.resource_data_path}" == item.resource_path
    # What the connector fetches decodes, with the product's decoder, to the quarantined bytes.
    payloads = [b"".join(decode_resource(endpoint.read_quarantine_file(r.path))) for r in located.resources]
    assert payloads == [b"MZ one", b"MZ two", b"MZ three", b"not really eicar"]


class _BigEntries(FakeEndpoint):
    """Entries files of the given sizes (newest first), one unreadable."""

    def __init__(self, sizes: Sequence[int], unreadable: int) -> None:
        super().__init__([("MZ one", "C:\\a\\one.exe", b"MZ one")])
        self.sizes, self.unreadable = sizes, unreadable

    def _path(self, n: int) -> str:
        return f"{store.ROOT}\\Entries\\{{80000000-0000-0000-0000-{n:012X}}}"

    def entries_files(self) -> Sequence[QuarantineFile]:
        return [QuarantineFile(self._path(n), size) for n, size in enumerate(self.sizes)]

    def read_quarantine_file(self, path: str) -> Iterator[bytes]:
        n = next((n for n in range(len(self.sizes)) if self._path(n) == path), None)
        if n is None:
            return super().read_quarantine_file(path)
        return iter(()) if n == self.unreadable else iter([bytes([n]) * self.sizes[n]])


def test_simulate_locate_prints_the_newest_entries_files_within_both_bounds() -> None:
    each = endpoint_script.LOCATE_PRINT_EACH
    sizes = [100, each + 1, each, each, each, 50, each, 60]  # newest first
    run = simulate_locate("-JobId j", _BigEntries(sizes, unreadable=5))
    located = LocateOutcome.from_script_output(run.script_output)
    assert [e.size for e in located.entries] == sizes  # all listed
    printed = [n for n, e in enumerate(located.entries) if e.data is not None]
    # Over its own bound: 1; unreadable: 5; no room left within the total: 6.
    assert printed == [0, 2, 3, 4, 7]
    assert all(located.entries[n].data == bytes([n]) * sizes[n] for n in printed)
    assert sum(sizes[n] for n in printed) <= endpoint_script.LOCATE_PRINT_TOTAL


def test_simulate_locate_on_an_empty_quarantine_says_not_found() -> None:
    run = simulate_locate("-JobId j", FakeEndpoint([]))
    assert run.exit_code == contract.EXIT_NOT_FOUND
    assert LocateOutcome.from_script_output(run.script_output).status == "not_found"
    assert simulate_locate("-JobId 'j'", FakeEndpoint([])).exit_code == contract.EXIT_ERROR


def test_simulate_cleanup_deletes_the_job_folder_only() -> None:
    endpoint = _endpoint()
    simulate(_collect_args(b"MZ one", job="job-1"), endpoint)
    simulate(_collect_args(b"MZ two", job="job-2"), endpoint)
    endpoint.write_file(r"C:\Users\a\keep.txt", b"unrelated")

    run = simulate(format_args(CollectRequest("Cleanup", "JOB-1")), endpoint)
    assert run.exit_code == contract.EXIT_FOUND
    assert ScriptOutcome.from_script_output(run.script_output) == ScriptOutcome("cleaned")
    assert sorted(endpoint.files) == sorted([sample_path("job-2").lower(), r"c:\users\a\keep.txt"])

    again = simulate(format_args(CollectRequest("Cleanup", "job-1")), endpoint)
    assert again.exit_code == contract.EXIT_FOUND


@pytest.mark.parametrize(
    "args",
    [
        "-Mode Collect -JobId j -Sha256 abc",
        "-Mode Collect -JobId ..\\x -Sha256 " + SHA,
        "-Mode Wipe -JobId j",
        "-Mode Cleanup -JobId j; Remove-Item C:\\",
        "-Mode 'Cleanup' -JobId 'j'",
        "calc.exe",
    ],
)
def test_simulate_refuses_bad_arguments_like_powershell(args: str) -> None:
    endpoint = _endpoint()
    run = simulate(args, endpoint)
    assert run.exit_code == contract.EXIT_ERROR
    assert run.script_output == ""
    assert run.script_errors.startswith(contract.SCRIPT_NAME)
    assert endpoint.files == {}
    with pytest.raises(contract.ContractError):
        ScriptOutcome.from_script_output(run.script_output)


def test_simulate_collect_without_hash_reports_an_error_line() -> None:
    run = simulate("-Mode Collect -JobId j", _endpoint())
    assert run.exit_code == contract.EXIT_ERROR
    outcome = ScriptOutcome.from_script_output(run.script_output)
    assert outcome.status == "error"
    assert "Sha256" in outcome.message


def test_simulate_cleanup_leaves_a_work_root_someone_else_made_alone() -> None:
    endpoint = _endpoint()
    planted = FolderState(contract.WORK_ROOT, USER, (USER, USERS))
    endpoint.folders[contract.WORK_ROOT.lower()] = planted
    endpoint.write_file(contract.job_folder("job-1") + "\\planted.txt", b"left by someone")
    run = simulate(format_args(CollectRequest("Cleanup", "job-1")), endpoint)
    assert run.exit_code == contract.EXIT_ERROR
    outcome = ScriptOutcome.from_script_output(run.script_output)
    assert outcome.status == "unsafe_folder"
    assert outcome.message.startswith(f"{contract.WORK_ROOT} is owned by {USER}")
    assert endpoint.folders == {contract.WORK_ROOT.lower(): planted}
    assert list(endpoint.files) == [(contract.job_folder("job-1") + "\\planted.txt").lower()]
