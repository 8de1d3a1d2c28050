"""The collection plan by platform (pure steps): each machine's platform decided once from the
machines list (osPlatform, else the evidence path), the strategies of that platform only, the
POSIX path for GetFile, the Bash restore behind AllowQuarantineRestore, machines live response
cannot reach left out with their reason, and a give-up that names the setting holding a restore
back."""

from __future__ import annotations

from joedefender.domain.jobs import Attempt, Candidate, SampleJob
from joedefender.domain.liveresponse import Machine
from joedefender.domain.platforms import Platform
from joedefender.domain.reasons import Cause, Reason
from joedefender.pipeline.collection.devices import decide, platform_for
from joedefender.pipeline.collection.plan import give_up_cause, plan
from joedefender.pipeline.collection.registry import STRATEGIES, by_name
from joedefender.pipeline.collection.strategy import Target
from joedefender.pipeline.config import PipelineConfig

M1, M2, M3 = "1" * 40, "2" * 40, "3" * 40
RESTORE_ALLOWED = PipelineConfig(allow_quarantine_restore=True)


def _candidate(machine_id: str, directory: str, name: str, *, av: bool = False) -> Candidate:
    return Candidate(
        machine_id=machine_id,
        alert_id=f"alert-{machine_id[0]}",
        path=f"{directory}\\{name}",  # as triage stores it: joined the Windows way
        file_name=name,
        directory=directory,
        detection_source="WindowsDefenderAv" if av else "WindowsDefenderAtp",
        detection_status="Prevented" if av else "Detected",
    )


def _job(*candidates: Candidate) -> SampleJob:
    return SampleJob(
        key="sha256:x", kind="file", sha256="a" * 64, created_at=0, updated_at=0, candidates=list(candidates)
    )


def _names(job: SampleJob, config: PipelineConfig) -> list[tuple[str, str]]:
    return [(c.machine_id, s.name) for c, s in plan(job, STRATEGIES, config)]


def _target(job: SampleJob, candidate: Candidate, strategy: str) -> Target:
    attempt = Attempt(number=1, machine_id=candidate.machine_id, strategy=strategy, nonce="job-1", started_at=0)
    return Target(job, candidate, attempt, 1 << 20, job.platform_of(candidate.machine_id))


def test_each_platform_gets_its_own_strategies_and_paths() -> None:
    job = _job(
        _candidate(M1, "C:\\Users\\a", "x.dll", av=True),
        _candidate(M2, "/tmp/.x", "kworkerd", av=True),
        _candidate(M3, "/Users/c/Downloads", "a\\b.sh", av=True),  # a backslash is a name's own on macOS
    )
    lines = decide(
        job, {M1: Machine(M1, True, "Windows11"), M2: Machine(M2, True, "Ubuntu"), M3: Machine(M3, True, "MacOs")}
    )
    assert lines == [
        f"{M1}: osPlatform 'Windows11' is Windows",
        f"{M2}: osPlatform 'Ubuntu' is Linux",
        f"{M3}: osPlatform 'MacOs' is macOS",
    ]
    assert decide(job, {M1: Machine(M1, True, "Ubuntu")}) == []  # decided once: not again, not changed
    assert _names(job, RESTORE_ALLOWED) == [
        (M1, "locate"),
        (M1, "quarantine"),
        (M1, "getfile"),
        (M1, "restore"),
        (M2, "getfile"),
        (M2, "mdatp-restore"),
        (M3, "getfile"),
        (M3, "mdatp-restore"),
    ]
    assert _names(job, PipelineConfig()) == [
        (M1, "locate"),
        (M1, "quarantine"),
        (M1, "getfile"),
        (M2, "getfile"),
        (M3, "getfile"),
    ]
    getfile = by_name("getfile")
    assert getfile is not None
    paths = [getfile.commands(_target(job, c, "getfile"))[0].target for c in job.candidates]
    assert paths == ["C:\\Users\\a\\x.dll", "/tmp/.x/kworkerd", "/Users/c/Downloads/a\\b.sh"]


def test_the_bash_restore_runs_the_script_then_fetches_from_the_job_folder_and_cleans_up() -> None:
    job = _job(_candidate(M2, "/opt/app", "up date", av=True))
    decide(job, {M2: Machine(M2, True, "RedHatEnterpriseLinux")})
    restore = by_name("mdatp-restore")
    assert restore is not None
    run, fetch = restore.commands(_target(job, job.candidates[0], "mdatp-restore"))
    assert (run.kind, run.target) == ("RunScript", "joedefender-collect.sh")
    assert run.args == f"-Mode Restore -JobId job-1 -Sha256 {'a' * 64} -OriginalPathHex {b'/opt/app/up date'.hex()}"
    assert (fetch.kind, fetch.target) == ("GetFile", "/var/opt/joedefender/job-1/sample.bin")
    (cleanup,) = restore.cleanup("job-1")
    assert (cleanup.target, cleanup.args) == ("joedefender-collect.sh", "-Mode Cleanup -JobId job-1")
    assert [s.name for s in restore.scripts] == ["joedefender-collect.sh"]


def test_an_unknown_osplatform_falls_back_to_the_evidence_path() -> None:
    job = _job(_candidate(M1, "C:\\Users\\a", "x.exe"), _candidate(M2, "/srv/app", "x.bin"))
    assert [platform_for(job, c) for c in job.candidates] == [Platform.WINDOWS, Platform.LINUX]  # before the read
    lines = decide(job, {M1: Machine(M1, True, "Workstation"), M2: Machine(M2, True, None)})
    assert lines == [
        f"{M1}: osPlatform 'Workstation' names no platform we know;"
        " the evidence path 'C:\\Users\\a\\x.exe' is a Windows path",
        f"{M2}: Defender gave no osPlatform; the evidence path '/srv/app/x.bin' is a POSIX path, taken for Linux",
    ]
    assert (job.platform_of(M1), job.platform_of(M2)) == (Platform.WINDOWS, Platform.LINUX)


def test_machines_live_response_cannot_reach_are_left_out_with_their_reason() -> None:
    job = _job(_candidate(M1, "/srv", "a"), _candidate(M2, "/private/var/mobile", "b"), _candidate(M3, "/srv", "c"))
    machines = {
        M1: Machine(M1, True, "SuseLinux", agent_version="101.44.2"),
        M2: Machine(M2, True, "iPadOS"),
        M3: Machine(M3, True, "Debian", agent_version="101.45.13"),  # the minimum itself is enough
    }
    decide(job, machines)
    assert _names(job, PipelineConfig()) == [(M3, "getfile")]
    job.attempts.append(
        Attempt(
            number=1,
            machine_id=M3,
            strategy="getfile",
            nonce="n",
            started_at=0,
            outcome="failed",
            failure=Cause(reason=Reason.ACTION_FAILED, detail="gone"),
        )
    )
    assert _names(job, PipelineConfig()) == []
    cause = give_up_cause(job, STRATEGIES, PipelineConfig())
    assert cause.reason == Reason.NOT_COLLECTED
    assert f"{M1}: live response needs Defender 101.45.13 or later on Linux; this device runs 101.44.2" in cause.text
    assert f"{M2}: osPlatform 'iPadOS': live response does not support this platform" in cause.text


def test_a_give_up_names_the_setting_only_where_a_restore_was_held_back() -> None:
    failed = Cause(reason=Reason.ACTION_FAILED, detail="the file is gone")
    for directory, os_platform, av, config, held in (
        ("/tmp/.x", "Ubuntu", True, PipelineConfig(), True),
        ("/Users/c", "macOS", True, PipelineConfig(), True),
        ("/tmp/.x", "Ubuntu", False, PipelineConfig(), False),  # EDR: no quarantine to restore from
        ("/tmp/.x", "Ubuntu", True, PipelineConfig(fetch_quarantined_files=False), False),  # not wanted at all
        ("C:\\Temp", "Windows11", True, PipelineConfig(), False),  # Windows reads the quarantine without one
    ):
        job = _job(_candidate(M1, directory, "x", av=av))
        decide(job, {M1: Machine(M1, True, os_platform)})
        for pair in plan(job, STRATEGIES, config):
            job.attempts.append(
                Attempt(
                    number=len(job.attempts) + 1,
                    machine_id=M1,
                    strategy=pair[1].name,
                    nonce="n",
                    started_at=0,
                    outcome="failed",
                    failure=failed,
                )
            )
        cause = give_up_cause(job, STRATEGIES, config)
        assert (cause.reason == Reason.RESTORE_NOT_ALLOWED) is held, (directory, av, config)
        if held:
            assert "AllowQuarantineRestore=true allows it" in cause.text
            assert f"(getfile on {M1}: the file is gone)" in cause.text
