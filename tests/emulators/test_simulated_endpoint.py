"""The MDE emulator's simulated endpoint: how it binds the collection script's arguments and
what it does with them, read back through the connector's contract (which the simulation is
written independently of)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import pytest

from joedefender.endpoint import contract
from joedefender.endpoint.contract import CollectRequest, ScriptOutcome, format_args, sample_path
from joedefender_emulators.errors import EmulatorError
from joedefender_emulators.mde import endpoint_script
from joedefender_emulators.mde.endpoint_script import (
    EndpointScriptError,
    QuarantinedItem,
    ScriptRun,
    parse_args,
    simulate,
)

SHA = hashlib.sha256(b"sample").hexdigest()


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


@pytest.mark.parametrize(
    "outcome",
    [
        ScriptOutcome("found", SHA, 123, sample_path("job-1"), "quarantine", ""),
        ScriptOutcome("not_found", message="no quarantined file has this SHA-256"),
        ScriptOutcome("error", message='failed: C:\\o\'brien\\"x" \u4e2d'),
        ScriptOutcome("cleaned"),
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
        (CollectRequest("Collect", "a\\b", SHA), "JobId must match"),
        (CollectRequest("Collect", "j", "g" * 64), "Sha256 must match"),
        (CollectRequest("Collect", "j", SHA, threat_name='say "hi"'), "ThreatName must match"),
        (CollectRequest("Collect", "j", SHA, threat_name="\ud800"), "ThreatName is not valid Unicode"),
        (CollectRequest("Collect", "j", SHA, original_path="C:\\*.exe"), "OriginalPath must match"),
        (
            CollectRequest("Collect", "j", SHA, original_path="C:\\" + "a" * 1022),
            "OriginalPath must be 4 to 1024",
        ),
    ],
)
def test_what_the_contract_refuses_the_simulated_script_refuses(request_: CollectRequest, complaint: str) -> None:
    with pytest.raises(contract.ContractError, match=complaint):
        format_args(request_)
    values = [(name, value) for name, value in _arguments(request_) if value is not None]
    args = " ".join(f"-{name} '{value}'" for name, value in values)
    with pytest.raises(EndpointScriptError, match=complaint):
        parse_args(args)


def _arguments(request: CollectRequest) -> list[tuple[str, str | None]]:
    return [
        ("Mode", request.mode),
        ("JobId", request.job_id),
        ("Sha256", request.sha256),
        ("ThreatName", request.threat_name),
        ("OriginalPath", request.original_path),
    ]


# ---------------------------------------------------------------- binding the arguments


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ("", "Mode is missing"),
        ("-JobId 'j'", "Mode is missing"),
        ("-Mode 'Cleanup'", "JobId is missing"),
        ("-Mode 'Cleanup' -JobId 'j' -JobId 'k'", "more than once"),
        ("-Mode 'Cleanup' -JobId 'j' -Force 'x'", "unknown parameter"),
        ("-mode 'Cleanup' -JobId 'j'", "unknown parameter"),
        ("-Mode Cleanup -JobId 'j'", "single-quoted"),
        ("-Mode \"Cleanup\" -JobId 'j'", "single-quoted"),
        ("-Mode 'Cleanup' -JobId 'j", "no closing quote"),
        ("-Mode 'Cleanup' -JobId 'j'x", "unexpected text"),
        ("-Mode 'Cleanup' -JobId 'j' ; calc", "parameter name"),
        ("-Mode 'Cleanup' -JobId 'j' 'extra'", "parameter name"),
        ("-Mode'Cleanup' -JobId 'j'", "blank"),
        ("-Mode 'Erase' -JobId 'j'", "Mode must be"),
        ("-Mode 'Collect' -JobId 'j' -Sha256 'abc'", "Sha256"),
    ],
)
def test_parse_args_rejects_anything_format_args_would_not_write(args: str, complaint: str) -> None:
    with pytest.raises(EndpointScriptError, match=complaint):
        parse_args(args)


def test_parse_args_leaves_the_missing_hash_to_the_script_body() -> None:
    assert parse_args("-Mode 'Collect' -JobId 'j'") == {"Mode": "Collect", "JobId": "j"}


def test_parse_args_tolerates_extra_blanks() -> None:
    assert parse_args("  -Mode\t'Cleanup'   -JobId  'j' ") == {"Mode": "Cleanup", "JobId": "j"}


def test_parse_args_reads_doubled_quotes_as_one() -> None:
    bound = parse_args("-Mode 'Collect' -JobId 'j' -ThreatName 'o''brien \u2019\u2019x' -Sha256 '" + SHA + "'")
    assert bound["ThreatName"] == "o'brien \u2019x"


def test_the_emulators_errors_are_their_own() -> None:
    assert issubclass(EndpointScriptError, EmulatorError)
    assert not issubclass(EndpointScriptError, contract.ContractError)


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
    """A Windows machine reduced to its quarantine and a case-insensitive file table."""

    def __init__(self, items: Sequence[QuarantinedItem]) -> None:
        self.items = list(items)
        self.files: dict[str, bytes] = {}

    def quarantine(self) -> Sequence[QuarantinedItem]:
        return self.items

    def write_file(self, path: str, content: bytes) -> None:
        self.files[path.lower()] = content

    def delete_tree(self, folder: str) -> None:
        prefix = folder.lower().rstrip("\\") + "\\"
        self.files = {p: c for p, c in self.files.items() if not p.startswith(prefix)}


def _endpoint() -> FakeEndpoint:
    return FakeEndpoint(
        [
            QuarantinedItem("Trojan:Win32/Wacatac.B!ml", r"C:\Users\a\Downloads\one.exe", b"MZ one"),
            QuarantinedItem("Trojan:Win32/Wacatac.B!ml", r"C:\Users\a\Downloads\two.exe", b"MZ two"),
            QuarantinedItem("Trojan:Win32/Wacatac.B!ml", r"C:\Users\b\Desktop\three.exe", b"MZ three"),
            QuarantinedItem("Virus:DOS/EICAR_Test_File", r"C:\Windows\Temp\eicar.com", b"not really eicar"),
        ]
    )


def _collect_args(content: bytes, job: str = "job-1", **extra: str) -> str:
    return format_args(CollectRequest("Collect", job, hashlib.sha256(content).hexdigest().upper(), **extra))


def test_simulate_collects_only_the_matching_entry() -> None:
    endpoint = _endpoint()
    args = _collect_args(b"MZ two", threat_name="Trojan:Win32/Wacatac.B!ml")
    run = simulate(args, endpoint)

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


def test_simulate_collect_replaces_a_previous_attempt_of_the_same_job() -> None:
    endpoint = _endpoint()
    endpoint.write_file(contract.job_folder("job-1") + "\\restore\\leftover.exe", b"plaintext")
    simulate(_collect_args(b"MZ three"), endpoint)
    assert list(endpoint.files) == [sample_path("job-1").lower()]


def test_simulate_not_found_writes_nothing() -> None:
    endpoint = _endpoint()
    run = simulate(_collect_args(b"not quarantined here", original_path=r"C:\x.exe"), endpoint)
    assert run.exit_code == contract.EXIT_NOT_FOUND
    assert ScriptOutcome.from_script_output(run.script_output).status == "not_found"
    assert endpoint.files == {}


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
        "-Mode 'Collect' -JobId 'j' -Sha256 'abc'",
        "-Mode 'Collect' -JobId '..\\x' -Sha256 '" + SHA + "'",
        "-Mode 'Wipe' -JobId 'j'",
        "-Mode 'Collect' -JobId 'j' -Sha256 '" + SHA + "' -OriginalPath 'C:\\*'",
        "-Mode 'Cleanup' -JobId 'j'; Remove-Item C:\\",
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
    run = simulate("-Mode 'Collect' -JobId 'j'", _endpoint())
    assert run.exit_code == contract.EXIT_ERROR
    outcome = ScriptOutcome.from_script_output(run.script_output)
    assert outcome.status == "error"
    assert "Sha256" in outcome.message
