"""In-memory fakes of the Defender and Sandbox ports, for fast unit tests of pipeline steps.

They keep the rules the steps depend on (one live response per machine, actions that run for a
while, comments that stay, submissions found again by their marker) and let a test inject any
error of the core's vocabulary into any call with `fail(method, error, times)`. What the real
APIs do over sockets is tested against the emulators, not here.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import BinaryIO

from joedefender.domain.alerts import Alert, Evidence
from joedefender.domain.errors import Busy, NotFound
from joedefender.domain.incidents import Incident, with_verdict_tag
from joedefender.domain.indicators import ExistingIndicator, ImportResult, Indicator
from joedefender.domain.liveresponse import ActionStatus, Command, LiveResponseAction, Machine
from joedefender.domain.platforms import Platform
from joedefender.domain.verdicts import Detection, IocSet, SubmissionStatus, Verdict
from joedefender.endpoint import contract
from joedefender.pipeline.ports import Start
from joedefender_emulators.mde import quarantine as encrypted


class _Faults:
    """Errors queued per method name, raised by the next calls of that method."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._queued: dict[tuple[str, bool], list[Exception]] = {}

    def fail(self, method: str, error: Exception, times: int = 1, *, after: bool = False) -> None:
        """The next `times` calls of `method` raise `error`: before doing anything, or, with
        `after`, once the call has had its effect (a write applied, its answer lost)."""
        self._queued.setdefault((method, after), []).extend([error] * times)

    def enter(self, method: str) -> None:
        self.calls[method] += 1
        self._raise(method, after=False)

    def leave(self, method: str) -> None:
        self._raise(method, after=True)

    def _raise(self, method: str, *, after: bool) -> None:
        queued = self._queued.get((method, after))
        if queued:
            raise queued.pop(0)


@dataclass
class FakeAction:
    machine_id: str
    commands: tuple[Command, ...]
    comment: str
    id: str
    polls_left: int
    status: ActionStatus = ActionStatus.PENDING
    errors: tuple[str, ...] = ()
    results: dict[int, bytes] = field(default_factory=dict)
    outputs: dict[int, str] = field(default_factory=dict)

    def view(self) -> LiveResponseAction:
        return LiveResponseAction(self.id, self.status, self.comment, self.errors)


class FakeDefender(_Faults):
    """`files[(machine, path)]` are files on disk; `quarantine[machine]` are (sha256 → bytes) in
    Defender's quarantine (the locator lists their Entries and ResourceData files encrypted, the
    collect script decodes them, restore takes them out), quarantined from
    `quarantine_paths[sha256]` (default `C:\\q\\<n>.exe`); an action finishes after `action_polls`
    looks at it.
    `refuse_quarantine_getfile` makes GetFile on the Quarantine folder fail; `unprinted_entries`
    makes the locator list the Entries files without their bytes (as one that cannot read them);
    `decode_fails` makes the collect script's on-endpoint decode find nothing on those machines."""

    batches_comments = True  # `comment_alerts` is one call, as the MDE API's batchUpdate

    def __init__(self, *, action_polls: int = 1) -> None:
        super().__init__()
        self.alerts: dict[str, Alert] = {}
        self.machines: dict[str, Machine] = {}
        self.files: dict[tuple[str, str], bytes] = {}
        self.quarantine: dict[str, dict[str, bytes]] = {}
        self.quarantine_paths: dict[str, str] = {}
        self.actions: dict[str, FakeAction] = {}
        self.library: dict[str, bytes] = {}
        self.indicators: dict[str, Indicator] = {}
        self.max_indicators = 15000
        self.held: set[str] = set()  # machines whose live response session someone else holds
        self.refuse_quarantine_getfile = False
        self.unprinted_entries = False
        self.decode_fails: set[str] = set()
        self.turns: dict[Start, float] = {}  # real seconds until the tenant's budget admits a start
        self.restored: list[tuple[str, str]] = []  # (machine, sha256) taken out by MpCmdRun -Restore
        self.action_polls = action_polls
        self._ids = itertools.count(1)

    # -- setting up -------------------------------------------------------------------------

    def start_turn(self, start: Start) -> float:
        return self.turns.get(start, 0.0)

    def add_machine(self, machine_id: str, *, online: bool = True) -> None:
        self.machines[machine_id] = Machine(machine_id, online)

    def add_alert(self, alert: Alert) -> None:
        self.alerts[alert.id] = alert

    def comments(self, alert_id: str) -> tuple[str, ...]:
        return self.alerts[alert_id].comments

    # -- the port ---------------------------------------------------------------------------

    def list_alerts(self, since: datetime, until: datetime) -> Iterator[Alert]:
        self.enter("list_alerts")
        for alert in self.alerts.values():
            updated = alert.last_update_time
            if updated is not None and since <= updated < until:
                yield alert

    def get_alert(self, alert_id: str) -> Alert:
        self.enter("get_alert")
        try:
            return self.alerts[alert_id]
        except KeyError:
            raise NotFound(f"alert {alert_id} not found", service="defender") from None

    def get_alerts(self, alert_ids: Sequence[str]) -> list[Alert]:
        self.enter("get_alerts")
        return [self.alerts[i] for i in dict.fromkeys(alert_ids) if i in self.alerts]

    def comment_alerts(self, alert_ids: Sequence[str], text: str) -> None:
        self.enter("comment_alerts")
        missing = [i for i in alert_ids if i not in self.alerts]
        if missing:
            raise NotFound(f"alerts {missing} not found", service="defender")
        for alert_id in dict.fromkeys(alert_ids):
            alert = self.alerts[alert_id]
            self.alerts[alert_id] = replace(alert, comments=(*alert.comments, text))
        self.leave("comment_alerts")

    def add_comment(self, alert_id: str, text: str) -> None:
        self.enter("add_comment")
        alert = self.get_alert(alert_id)
        self.alerts[alert_id] = replace(alert, comments=(*alert.comments, text))
        self.leave("add_comment")

    def classify_alert(self, alert_id: str, classification: str, determination: str) -> None:
        self.enter("classify_alert")
        alert = self.get_alert(alert_id)
        self.alerts[alert_id] = replace(alert, classification=classification, determination=determination)
        self.leave("classify_alert")

    def get_machine(self, machine_id: str) -> Machine:
        self.enter("get_machine")
        try:
            return self.machines[machine_id]
        except KeyError:
            raise NotFound(f"machine {machine_id} not found", service="defender") from None

    def get_machines(self, machine_ids: Sequence[str]) -> list[Machine]:
        self.enter("get_machines")
        return [self.machines[i] for i in dict.fromkeys(machine_ids) if i in self.machines]

    def list_actions(self, machine_id: str) -> list[LiveResponseAction]:
        self.enter("list_actions")
        return [a.view() for a in self.actions.values() if a.machine_id == machine_id]

    def get_action(self, action_id: str) -> LiveResponseAction:
        self.enter("get_action")
        action = self._action(action_id)
        if action.status.running:
            action.polls_left -= 1
            if action.polls_left <= 0:
                self._carry_out(action)
            else:
                action.status = ActionStatus.IN_PROGRESS
        return action.view()

    def cancel_action(self, action_id: str, comment: str) -> None:
        self.enter("cancel_action")
        action = self._action(action_id)
        if action.status.running:
            action.status = ActionStatus.CANCELLED

    def run_live_response(self, machine_id: str, commands: Sequence[Command], comment: str) -> LiveResponseAction:
        self.enter("run_live_response")
        if machine_id not in self.machines:
            raise NotFound(f"machine {machine_id} not found", service="defender")
        running = any(a.machine_id == machine_id and a.status.running for a in self.actions.values())
        if running or machine_id in self.held:
            raise Busy("ActiveRequestAlreadyExists", service="defender")
        action = FakeAction(machine_id, tuple(commands), comment, f"action-{next(self._ids)}", self.action_polls)
        self.actions[action.id] = action
        self.leave("run_live_response")
        return action.view()

    @contextmanager
    def stream_file(self, action_id: str, index: int, *, max_bytes: int) -> Iterator[Iterator[bytes]]:
        self.enter("stream_file")
        action = self._action(action_id)
        if action.status != ActionStatus.SUCCEEDED or index not in action.results:
            raise NotFound(f"no result for command {index} of {action_id}", service="defender")
        data = action.results[index][:max_bytes]
        yield iter([data[i : i + 4096] for i in range(0, len(data), 4096)])

    def script_output(self, action_id: str, index: int) -> str:
        self.enter("script_output")
        action = self._action(action_id)
        if index not in action.outputs:
            raise NotFound(f"no script output for command {index} of {action_id}", service="defender")
        return action.outputs[index]

    def ensure_library_file(self, name: str, content: bytes, *, description: str, parameters_description: str) -> None:
        self.enter("ensure_library_file")
        self.library[name] = content

    # -- what the endpoint does -------------------------------------------------------------

    # -- indicators: created or updated by value and type, as Defender's import does --------------

    def import_indicators(self, indicators: Sequence[Indicator]) -> list[ImportResult]:
        self.enter("import_indicators")
        assert 0 < len(indicators) <= 500, "Defender takes at most 500 indicators per import"
        assert len({(i.type, i.value) for i in indicators}) == len(indicators), "one of each per import"
        results = []
        for indicator in indicators:
            assert indicator.action != "Audit" or indicator.generate_alert, "Audit needs generateAlert"
            found = next(
                (i for i, e in self.indicators.items() if (e.value, e.type) == (indicator.value, indicator.type)), None
            )
            if found is None and len(self.indicators) >= self.max_indicators:
                results.append(ImportResult(value=indicator.value, failed=True, reason="tenant limit"))
                continue
            indicator_id = found or str(next(self._ids))
            self.indicators[indicator_id] = indicator
            results.append(ImportResult(value=indicator.value, id=indicator_id))
        self.leave("import_indicators")
        return results

    def find_indicators(self, values: Sequence[str]) -> list[ExistingIndicator]:
        self.enter("find_indicators")
        return [self._existing(i, e) for i, e in self.indicators.items() if e.value in values]

    def own_indicators(self) -> list[ExistingIndicator]:
        self.enter("own_indicators")
        return [self._existing(i, e) for i, e in self.indicators.items() if e.application == "joedefender"]

    def count_indicators(self) -> int:
        self.enter("count_indicators")
        return len(self.indicators)

    def delete_indicators(self, ids: Sequence[str]) -> None:
        self.enter("delete_indicators")
        for indicator_id in ids:
            self.indicators.pop(indicator_id)

    @staticmethod
    def _existing(indicator_id: str, indicator: Indicator) -> ExistingIndicator:
        return ExistingIndicator(
            id=indicator_id,
            value=indicator.value,
            type=indicator.type,
            application=indicator.application,
            title=indicator.title,
            action=indicator.action,
            expires_at=indicator.expires_at,
        )

    def _action(self, action_id: str) -> FakeAction:
        try:
            return self.actions[action_id]
        except KeyError:
            raise NotFound(f"machine action {action_id} not found", service="defender") from None

    def _carry_out(self, action: FakeAction) -> None:
        """Run the commands in order; a failing command fails the action and skips the rest."""
        staged = {**self._encrypted_quarantine(action.machine_id), **self._entries_files(action.machine_id)}
        for index, command in enumerate(action.commands):
            if command.kind == "RunScript" and command.target == contract.LOCATE_SCRIPT_NAME:
                action.outputs[index] = self._locate_script(action.machine_id)
            elif command.kind == "RunScript":
                status, data = self._collect_script(action.machine_id, command.args or "")
                action.outputs[index] = json.dumps({"joedefender": contract.OUTPUT_VERSION, **status})
                if data is not None:
                    staged[str(status["path"])] = data
                if status["status"] not in ("found", "cleaned"):
                    action.status, action.errors = ActionStatus.FAILED, ("the script exited with an error",)
                    return
            else:
                if self.refuse_quarantine_getfile and command.target.startswith(contract.QUARANTINE_ROOT):
                    action.status, action.errors = ActionStatus.FAILED, (f"Access to {command.target} is denied",)
                    return
                data = staged.get(command.target, self.files.get((action.machine_id, command.target)))
                if not data:
                    action.status, action.errors = ActionStatus.FAILED, (f"File {command.target} was not found",)
                    return
                action.results[index] = data
        action.status = ActionStatus.SUCCEEDED

    def _quarantined(self, machine_id: str) -> list[encrypted.QuarantinedFile]:
        """The machine's quarantine as Defender writes it (by the emulator's encoder, which the
        product's decoder is checked against)."""
        return [
            encrypted.quarantine(
                0x80000000 + n,
                "Trojan:Win32/Fake",
                self.quarantine_paths.get(sha256, f"C:\\q\\{n}.exe"),
                functools.partial(list, [content]),
            )
            for n, (sha256, content) in enumerate(self.quarantine.get(machine_id, {}).items())
        ]

    def _encrypted_quarantine(self, machine_id: str) -> dict[str, bytes]:
        """The machine's ResourceData files, encrypted."""
        return {q.resource_path: b"".join(q.resource_chunks()) for q in self._quarantined(machine_id)}

    def _entries_files(self, machine_id: str) -> dict[str, bytes]:
        return {q.entries_path: q.entries_bytes for q in self._quarantined(machine_id)}

    def _locate_script(self, machine_id: str) -> str:
        resources = [{"path": p, "size": len(b)} for p, b in self._encrypted_quarantine(machine_id).items()]
        entries = [
            {"path": p, "size": len(b)} | ({} if self.unprinted_entries else {"hex": b.hex()})
            for p, b in self._entries_files(machine_id).items()
        ]
        status = "located" if resources else "not_found"
        document = {"status": status, "languageMode": "ConstrainedLanguage", "resources": resources, "message": ""}
        return json.dumps({"joedefender": contract.OUTPUT_VERSION, **document, "entries": entries})

    def _collect_script(self, machine_id: str, args: str) -> tuple[dict[str, str | int | None], bytes | None]:
        mode, job_id = _arg(args, "Mode"), _arg(args, "JobId")
        if mode == "Cleanup":
            return {"status": "cleaned"}, None
        sha256 = _arg(args, "Sha256").lower()
        quarantined = self.quarantine.get(machine_id, {})
        found = None if mode == "Collect" and machine_id in self.decode_fails else quarantined.get(sha256)
        if found is None:
            return {"status": "not_found", "message": "no quarantine entry matches"}, None
        if mode == "Restore":
            bytes.fromhex(_arg(args, "OriginalPathHex")).decode("utf-8")
            del quarantined[sha256]  # MpCmdRun -Restore takes the entry out of the quarantine
            self.restored.append((machine_id, sha256))
        path = contract.sample_path(job_id)
        outcome: dict[str, str | int | None] = {
            "status": "found",
            "sha256": sha256,
            "size": len(found),
            "path": path,
            "source": "restore" if mode == "Restore" else "quarantine",
        }
        return outcome, contract.defang(found)


def _arg(args: str, name: str) -> str:
    """The value of `-Name value` in what the connector formatted (the fake trusts it)."""
    words = args.split(" ")
    return words[words.index(f"-{name}") + 1]


@dataclass
class FakeSubmission:
    id: str
    webid: str
    sha256: str | None
    url: str | None
    filename: str | None
    tags: tuple[str, ...]
    comments: str
    polls_left: int


class FakeSandbox(_Faults):
    """`known[sha256 or url]` are analyses Joe has; `verdicts[sha256 or url]` are what a new
    analysis concludes (clean when absent); an analysis finishes after `analysis_polls` looks."""

    def __init__(self, *, analysis_polls: int = 1) -> None:
        super().__init__()
        self.known: dict[str, list[Verdict]] = {}
        self.verdicts: dict[str, tuple[Detection, int]] = {}
        self.submissions: list[FakeSubmission] = []
        self.iocs_of: dict[str, IocSet] = {}  # by sha256 or url of the analysed sample
        self.analysis_polls = analysis_polls
        self.platforms: list[Platform | None] = []  # the platform each submit_file named
        self._ids = itertools.count(1)

    def lookup(self, sha256: str) -> tuple[Verdict, ...]:
        self.enter("lookup")
        return tuple(sorted(self.known.get(sha256, ()), key=lambda v: v.severity, reverse=True))

    def lookup_url(self, url: str) -> tuple[Verdict, ...]:
        self.enter("lookup_url")
        return tuple(sorted(self.known.get(url, ()), key=lambda v: v.severity, reverse=True))

    def submit_file(
        self,
        stream: BinaryIO,
        filename: str,
        *,
        tags: Sequence[str],
        comments: str | None,
        platform: Platform | None = None,
    ) -> str:
        self.enter("submit_file")
        self.platforms.append(platform)
        digest = hashlib.sha256()
        for chunk in iter(lambda: stream.read(65536), b""):
            digest.update(chunk)
        submission_id = self._submit(digest.hexdigest(), None, filename, tags, comments)
        self.leave("submit_file")
        return submission_id

    def submit_url(self, url: str, *, tags: Sequence[str], comments: str | None) -> str:
        self.enter("submit_url")
        submission_id = self._submit(None, url, None, tags, comments)
        self.leave("submit_url")
        return submission_id

    def submission_info(self, submission_id: str) -> SubmissionStatus:
        self.enter("submission_info")
        submission = next(s for s in self.submissions if s.id == submission_id)
        submission.polls_left -= 1
        finished = submission.polls_left <= 0
        return SubmissionStatus(
            submission_id=submission.id,
            status="finished" if finished else "running",
            webid=submission.webid if finished else None,
        )

    def verdict(self, webid: str) -> Verdict:
        self.enter("verdict")
        submission = next(s for s in self.submissions if s.webid == webid)
        subject = submission.sha256 or submission.url or ""
        detection, score = self.verdicts.get(subject, ("clean", 0))
        return Verdict(
            detection=detection,
            score=score,
            webid=webid,
            sha256=submission.sha256,
            url=submission.url,
            link=f"https://joe.example/analysis/{webid}/0/html",
        )

    def find_analysis(self, marker: str) -> str | None:
        self.enter("find_analysis")
        return next((s.webid for s in self.submissions if marker in s.comments), None)

    def iocs(self, webid: str) -> IocSet:
        self.enter("iocs")
        submission = next((s for s in self.submissions if s.webid == webid), None)
        subject = (submission.sha256 or submission.url or "") if submission is not None else webid
        return self.iocs_of.get(subject, IocSet())

    def analysis_status(self, webid: str) -> str:
        self.enter("analysis_status")
        submission = next(s for s in self.submissions if s.webid == webid)
        submission.polls_left -= 1
        return "finished" if submission.polls_left <= 0 else "running"

    def _submit(
        self, sha256: str | None, url: str | None, filename: str | None, tags: Sequence[str], comments: str | None
    ) -> str:
        number = next(self._ids)
        self.submissions.append(
            FakeSubmission(
                f"sub-{number}",
                str(1000 + number),
                sha256,
                url,
                filename,
                tuple(tags),
                comments or "",
                self.analysis_polls,
            )
        )
        return f"sub-{number}"


class FakeIncidents(_Faults):
    """Defender XDR incidents in memory: `tags` and `comments` by incident id; an id not in
    `incidents` is not found. `tag_incident` keeps others' tags and replaces ours, as the adapter."""

    def __init__(self, *incident_ids: str) -> None:
        super().__init__()
        self.incidents: dict[str, Incident] = {i: Incident(i) for i in incident_ids}

    def get_incident(self, incident_id: str) -> Incident:
        self.enter("get_incident")
        try:
            return self.incidents[incident_id]
        except KeyError:
            raise NotFound(f"incident {incident_id} not found", service="graph") from None

    def comment_incident(self, incident_id: str, text: str) -> None:
        incident = self.get_incident(incident_id)
        self.enter("comment_incident")
        self.incidents[incident_id] = replace(incident, comments=(*incident.comments, text))
        self.leave("comment_incident")

    def tag_incident(self, incident_id: str, tag: str) -> Incident:
        incident = self.get_incident(incident_id)
        self.enter("tag_incident")
        self.incidents[incident_id] = replace(incident, tags=with_verdict_tag(incident.tags, tag))
        self.leave("tag_incident")
        return self.incidents[incident_id]


def file_alert(
    alert_id: str, machine_id: str, data: bytes, *, path: str = "C:\\Users\\u", name: str = "x.exe", **fields: str
) -> Alert:
    """An alert on `machine_id` whose File evidence is `data` at `path\\name`."""
    evidence = Evidence(
        entity_type="File",
        sha256=hashlib.sha256(data).hexdigest(),
        file_name=name,
        file_path=path,
        detection_status=fields.pop("detection_status", None),
    )
    return Alert(
        id=alert_id,
        detection_source=fields.pop("detection_source", "WindowsDefenderAtp"),
        severity="High",
        status="New",
        machine_id=machine_id,
        evidence=(evidence,),
        **fields,  # type: ignore[arg-type]
    )


def process_alert(alert_id: str, machine_id: str, command_line: str, *, image: str = "rundll32.exe") -> Alert:
    """An EDR alert on `machine_id` whose only evidence is a process of Windows' `image` (in
    SysWOW64, so an OS binary) running `command_line`."""
    evidence = Evidence(
        entity_type="Process",
        sha256=hashlib.sha256(image.encode()).hexdigest(),
        file_name=image,
        file_path="C:\\Windows\\SysWOW64",
        process_command_line=command_line,
    )
    return Alert(
        id=alert_id,
        detection_source="WindowsDefenderAtp",
        severity="High",
        status="New",
        machine_id=machine_id,
        evidence=(evidence,),
    )


def url_alert(alert_id: str, url: str, *, incident_id: str | None = None) -> Alert:
    """An EDR alert, on no machine, whose only evidence is `url` (of `incident_id`, if given)."""
    return Alert(
        id=alert_id,
        detection_source="WindowsDefenderAtp",
        status="New",
        evidence=(Evidence(entity_type="Url", url=url),),
        incident_id=incident_id,
    )
