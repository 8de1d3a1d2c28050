"""The platform of each candidate machine: decided once per job, and said in its history.

The plan needs it to choose strategies (PowerShell scripts on Windows, the Bash script on Linux
and macOS) and paths (on Linux and macOS the evidence path is joined without Windows rules), and
the submission to choose Joe's systems. It comes from the machine's osPlatform as the machines
list gives it, else from the form of the evidence path (`domain.platforms.decide_platform`). A
machine live response cannot reach (a mobile platform, an agent older than live response needs)
is recorded as blocked: the plan leaves it out, and if nothing else collects the file the job's
failure says why, without a call Defender would refuse. A machine not read yet (not listed:
offline or gone) is planned by its evidence path's form until it is.
"""

from __future__ import annotations

from collections.abc import Mapping

from joedefender.domain.jobs import Candidate, Device, SampleJob
from joedefender.domain.liveresponse import Machine
from joedefender.domain.platforms import Platform, decide_platform, live_response_blocker


def evidence_path(candidate: Candidate) -> str | None:
    """The evidence path in its own form, for the fallback rule: joined with `/` when Defender's
    directory is a POSIX one, else the Windows way."""
    return candidate.path_on(Platform.LINUX) or candidate.path


def platform_for(job: SampleJob, candidate: Candidate) -> Platform | None:
    """The platform to plan the candidate's machine with; None: live response cannot reach it."""
    device = job.devices.get(candidate.machine_id)
    if device is None:
        return decide_platform(None, evidence_path(candidate)).platform
    return None if device.blocked else device.platform


def decide(job: SampleJob, machines: Mapping[str, Machine | None]) -> list[str]:
    """Decide the platform of every listed candidate machine the job has not decided yet (into
    `job.devices`); the history lines that say how each was decided."""
    lines: list[str] = []
    for candidate in job.candidates:
        machine = machines.get(candidate.machine_id)
        if machine is None or candidate.machine_id in job.devices:
            continue
        decision = machine.platform_for(evidence_path(candidate))
        if decision.platform is None:
            blocked: str | None = decision.reason
        else:
            blocked = live_response_blocker(decision.platform, machine.agent_version)
        job.devices[candidate.machine_id] = Device(platform=decision.platform, blocked=blocked)
        why = decision.reason if blocked in (None, decision.reason) else f"{decision.reason}; {blocked}"
        lines.append(f"{candidate.machine_id}: {why}")
    return lines


def unreachable(job: SampleJob) -> list[str]:
    """Why each machine live response cannot reach was left out, for the job's failure."""
    return [f"{machine_id}: {device.blocked}" for machine_id, device in job.devices.items() if device.blocked]
