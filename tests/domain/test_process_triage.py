"""Triage of Process evidence: which images are samples, which command-line targets are taken, and
what the alert's history says about the rest (escaped, bounded)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from joedefender.domain.alerts import Alert, Evidence
from joedefender.domain.comments import render_failure, render_verdict
from joedefender.domain.jobs import Candidate
from joedefender.domain.origins import Origin, OriginKind
from joedefender.domain.os_binaries import OsBinaryRules
from joedefender.domain.process_evidence import ProcessPolicy, origin, target_origin
from joedefender.domain.proxy_targets import MAX_TARGETS_PER_ALERT, Target
from joedefender.domain.reasons import Reason
from joedefender.domain.samples import SampleKey
from joedefender.domain.triage import MAX_NOTES, AlertFilters, triage
from joedefender.domain.verdicts import Verdict

SHA = hashlib.sha256(b"image").hexdigest()
M1, M2 = "1" * 40, "2" * 40
RUNDLL32 = Evidence(entity_type="Process", sha256=SHA, file_name="rundll32.exe", file_path="C:\\Windows\\SysWOW64")


def _alert(*evidence: Evidence, machine: str | None = M1) -> Alert:
    return Alert(
        id="a1",
        detection_source="WindowsDefenderAtp",
        severity="High",
        status="New",
        machine_id=machine,
        evidence=evidence,
    )


def _process(path: str, line: str | None = None, sha256: str | None = SHA, **extra: str) -> Evidence:
    folder, _, name = path.rpartition("\\" if "\\" in path else "/")
    return Evidence(
        entity_type="Process", sha256=sha256, file_name=name, file_path=folder, process_command_line=line, **extra
    )


def _run(line: str, **changes: str) -> Evidence:
    return replace(RUNDLL32, process_command_line=line, **changes)


@pytest.mark.parametrize(
    ("path", "sample"),
    [
        ("C:\\Users\\bob\\AppData\\Local\\Temp\\QuickUpdater.exe", True),
        ("C:\\Windows\\SysWOW64\\rundll32.exe", False),
        ("C:\\WINDOWS\\system32\\svchost.exe", False),
        ("C:\\Windows\\Temp\\svchost.exe", True),  # a folder users can write to
        ("C:\\Windows\\System32\\config\\systemprofile\\x.exe", True),
        ("C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.1-0\\MsMpEng.exe", False),
        ("/usr/bin/curl", False),
        ("/tmp/.x/miner", True),
        ("/System/Library/CoreServices/launchservicesd", False),
        ("/Users/bob/Downloads/installer", True),
    ],
)
def test_a_process_image_is_a_sample_unless_it_is_an_os_binary(path: str, sample: bool) -> None:
    decision = triage(_alert(_process(path), Evidence(entity_type="User")), AlertFilters())
    assert decision.accepted is sample
    if sample:
        [(key, evidence)] = decision.files
        assert key == SampleKey.for_file(SHA)
        assert origin(evidence) == Origin(kind=OriginKind.PROCESS_IMAGE, path=path)
        assert Candidate.sighted(_alert(), evidence) is not None
    else:
        assert decision.cause is not None
        assert decision.cause.reason == Reason.NO_EVIDENCE
        assert f"only operating-system files: {path}" in decision.cause.text
        assert any("is an operating-system file" in note for note in decision.skipped_evidence)


def test_a_file_and_a_process_image_of_one_hash_are_one_sample() -> None:
    image = _process("C:\\Users\\bob\\x.exe")
    file = Evidence(entity_type="File", sha256=SHA.upper(), file_name="x.exe", file_path="C:\\Users\\bob")
    decision = triage(_alert(file, image), AlertFilters())
    assert [key for key, _ in decision.files] == [SampleKey.for_file(SHA)]


def test_extra_rules_add_os_folders_and_exceptions() -> None:
    rules = OsBinaryRules.with_extra(["D:\\Windows\\*", "!C:\\Windows\\System32\\evil.exe"])
    policy = ProcessPolicy(os_rules=rules)
    on_d = triage(_alert(_process("D:\\Windows\\explorer.exe")), AlertFilters(), policy)
    assert not on_d.accepted
    excepted = triage(_alert(_process("C:\\Windows\\System32\\evil.exe")), AlertFilters(), policy)
    assert excepted.accepted


def test_the_dll_rundll32_runs_is_a_target_on_the_processs_machine_and_rundll32_is_not_a_sample() -> None:
    item = _run("rundll32.exe  c:\\temp\\suspicious.dll,RepeatAfterMe")
    decision = triage(_alert(item), AlertFilters())
    assert decision.accepted
    assert decision.files == ()
    assert decision.targets == (Target("C:\\temp\\suspicious.dll", "rundll32.exe", M1),)
    assert decision.summary == "0 file(s), 0 URL(s), 1 command-line target(s)"
    assert target_origin(decision.targets[0]) == Origin(
        kind=OriginKind.RUN_BY, path="C:\\temp\\suspicious.dll", runner="rundll32.exe"
    )
    # Graph names the machine per item: the item's machine wins over the alert's.
    on_m2 = triage(_alert(_run("rundll32 C:\\x\\a.dll,Go", machine_id=M2)), AlertFilters())
    assert [t.machine_id for t in on_m2.targets] == [M2]


def test_a_target_the_alert_gives_as_file_evidence_with_its_hash_is_not_fetched_again() -> None:
    # Defender's own example: the DLL rundll32 ran is also a File item, with its sha256.
    dll = Evidence(entity_type="File", sha256=SHA, file_name="suspicious.dll", file_path="c:\\temp")
    decision = triage(_alert(_run("rundll32.exe  c:\\temp\\suspicious.dll,RepeatAfterMe"), dll), AlertFilters())
    assert decision.targets == ()
    assert [key.value for key, _ in decision.files] == [SHA]
    assert any("evidence of the alert already" in note for note in decision.skipped_evidence)


def test_without_a_machine_a_target_cannot_be_collected_and_says_so() -> None:
    decision = triage(_alert(_run("rundll32.exe c:\\temp\\x.dll,Go"), machine=None), AlertFilters())
    assert not decision.accepted
    assert any("no machine is named" in note for note in decision.skipped_evidence)


def test_at_most_a_few_targets_per_alert_and_the_rest_are_named() -> None:
    items = [_run(f"rundll32.exe C:\\ProgramData\\p{n}.dll,Go") for n in range(MAX_TARGETS_PER_ALERT + 3)]
    decision = triage(_alert(*items), AlertFilters())
    assert len(decision.targets) == MAX_TARGETS_PER_ALERT
    assert any("more than" in note for note in decision.skipped_evidence)


def test_skipped_targets_are_recorded_with_their_reason() -> None:
    lines = [
        "rundll32.exe \\\\evil.example\\share\\x.dll,Go",
        "mshta.exe http://evil.example/a.hta",
        "rundll32.exe payload.dll,Go",
        'rundll32.exe "C:\\a""b\\x.dll",Go',
    ]
    decision = triage(_alert(*(_run(line) for line in lines)), AlertFilters())
    notes = " | ".join(decision.skipped_evidence)
    for why in ("network share", "is a URL", "relative path", "more than one way"):
        assert why in notes


def test_the_settings_turn_either_part_off() -> None:
    alert = _alert(_process("C:\\Users\\bob\\x.exe"), _run("rundll32.exe c:\\temp\\x.dll,Go"))
    neither = triage(alert, AlertFilters(), ProcessPolicy(images=False, targets=False))
    assert not neither.accepted
    assert any("AnalyseProcessImages is off" in note for note in neither.skipped_evidence)
    targets_only = triage(alert, AlertFilters(), ProcessPolicy(images=False))
    assert (len(targets_only.files), len(targets_only.targets)) == (0, 1)
    images_only = triage(alert, AlertFilters(), ProcessPolicy(targets=False))
    assert (len(images_only.files), len(images_only.targets)) == (1, 0)


def test_notes_show_attacker_paths_escaped_and_are_bounded_in_number() -> None:
    evil = _process("C:\\Windows\\System32\\a\u202egpj.exe\nJoe Sandbox: CLEAN", sha256=None)
    many = [Evidence(entity_type="Registry") for _ in range(MAX_NOTES * 5)]
    decision = triage(_alert(evil, *many), AlertFilters())
    assert len(decision.skipped_evidence) == MAX_NOTES + 1
    assert "\\u{202E}" in decision.skipped_evidence[0]
    assert all("\n" not in note for note in decision.skipped_evidence)
    assert decision.skipped_evidence[-1] == f"{MAX_NOTES * 4 + 1} more evidence item(s) not analysed"


def test_comments_say_what_the_sample_was_escaped_and_bounded() -> None:
    verdict = Verdict(detection="malicious", score=90, webid="1", link="https://joe.example/1")
    evil_path = "C:\\ProgramData\\x\nJoe Sandbox: CLEAN (score 0/100)\n" + "A" * 10_000 + ".dll"
    run_by = Origin(kind=OriginKind.RUN_BY, path=evil_path, runner="rundll32.exe (started by cmd.exe)")
    text = render_verdict(
        verdict, sample_key=f"sha256:{SHA}", subject=SHA, file_name="x.dll", reused=False, origin=run_by
    )
    [line] = [line for line in text.splitlines() if line.startswith("Run by ")]
    assert line.startswith("Run by rundll32.exe (started by cmd.exe): C:\\ProgramData\\x\\nJoe Sandbox")
    assert len(line) < 400
    assert "File: " not in text
    assert [line for line in text.splitlines() if line.startswith("Joe Sandbox:")] == [text.splitlines()[0]]
    image = Origin(kind=OriginKind.PROCESS_IMAGE, path="C:\\Users\\bob\\x.exe")
    failure = render_failure(sample_key="path:abc", subject=None, file_name="x.exe", reason="gone", origin=image)
    assert failure.splitlines()[2] == "Process image: C:\\Users\\bob\\x.exe"
    assert "SHA-256" not in failure
