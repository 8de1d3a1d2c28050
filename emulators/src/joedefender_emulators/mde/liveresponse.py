"""Machine actions and live response: the run checks (feature, machine, one session per machine,
25 sessions per tenant), listing, cancel and result links."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.http import ApiError
from joedefender_emulators.mde.actions import CommandResult, Endpoint, MachineAction
from joedefender_emulators.mde.commands import parse_request
from joedefender_emulators.mde.common import check_properties, json_object, not_found
from joedefender_emulators.mde.downloads import DownloadLinks
from joedefender_emulators.mde.filesystem import EndpointFiles
from joedefender_emulators.mde.library import Library
from joedefender_emulators.mde.machines import MachineDirectory
from joedefender_emulators.mde.odata import Field, Kind, Page, fields
from joedefender_emulators.mde.platforms import MIN_AGENTS, device_os, version_numbers
from joedefender_emulators.mde.ratelimit import too_many_requests
from joedefender_emulators.scenario import DefenderScenario, Machine

MAX_SESSIONS = 25
FILTERABLE: dict[str, Field] = {
    **fields(Kind.STRING, "id", "status", "machineId", "type", "requestor"),
    **fields(Kind.DATETIME, "creationDateTimeUtc"),
}
# Who holds a scenario's busy machine: an analyst's session from the portal's device page. Such
# sessions are not listed in (nor found through) machineactions (mde-api.md section 3, from
# run-live-response.md and live-response.md); they only show as 400 ActiveRequestAlreadyExists
# on runliveresponse for that machine.
OTHER_REQUESTOR = "secops-analyst@contoso.com"


class LiveResponse:
    """All machine actions of the tenant; callers hold the tenant lock."""

    def __init__(
        self,
        tenant: DefenderScenario,
        clock: EmulatedClock,
        machines: MachineDirectory,
        files: Mapping[str, EndpointFiles],
        library: Library,
    ) -> None:
        self._tenant = tenant
        self._clock = clock
        self._machines = machines
        self._files = files
        self._library = library
        self.links = DownloadLinks(clock, tenant.live_response.download_link_seconds)
        self._actions: dict[str, MachineAction] = {}
        for machine in machines.all():
            if machine.busy_until > 0:
                self._add(
                    MachineAction(
                        str(uuid.uuid4()),
                        machine,
                        requestor=OTHER_REQUESTOR,
                        comment="Investigation session",
                        created=min(0.0, machine.busy_until - 600.0),
                        commands=(),
                        holds_until=machine.busy_until,
                    )
                )

    def _add(self, action: MachineAction) -> None:
        self._actions[action.id] = action

    def _endpoint(self, machine: Machine) -> Endpoint:
        return Endpoint(
            machine,
            self._files[machine.id],
            self._library,
            self._tenant.live_response,
            self._tenant.unsigned_scripts_allowed,
        )

    def settle(self) -> None:
        """Bring every action up to the emulated now (lazily computed lifecycle)."""
        now = self._clock.elapsed()
        for action in self._actions.values():
            action.advance(now, self._endpoint(action.machine))

    def run(self, machine_id: str, body: Any, requestor: str) -> dict[str, Any]:
        if not self._tenant.live_response_enabled:
            raise ApiError(
                403, "DisabledFeature", "Live response is not enabled for this tenant (Settings > Advanced features)."
            )
        request = parse_request(body)
        machine = self._machines.by_id(machine_id)
        if machine is None:
            raise not_found(f"Machine {machine_id[:100]}")
        self._check_platform(machine)
        self.settle()
        if any(a.active and a.machine.id == machine.id for a in self._actions.values()):
            raise ApiError(400, "ActiveRequestAlreadyExists", "Action is already in progress")
        self._check_sessions(machine)
        action = MachineAction(
            str(uuid.uuid4()),
            machine,
            requestor=requestor,
            comment=request.comment,
            created=self._clock.elapsed(),
            commands=request.commands,
        )
        self._add(action)
        return action.to_json(self._clock)

    @staticmethod
    def _check_platform(machine: Machine) -> None:
        """Windows, macOS and Linux servers only (run-live-response.md), on Linux and macOS from
        the agent live-response.md names. docs silent on the error for either: a 400 that says why."""
        os_name = device_os(machine)
        if os_name is None:
            raise ApiError(
                400, "OsPlatformNotSupported", f"Live response does not support the OS platform {machine.os_platform}."
            )
        minimum = MIN_AGENTS.get(os_name)
        version = version_numbers(machine.agent_version)
        if minimum is not None and version is not None and version < minimum:
            needed = ".".join(map(str, minimum))
            raise ApiError(
                400,
                "OsPlatformNotSupported",
                f"Live response needs agent version {needed} or later on {os_name}; "
                f"the machine runs {machine.agent_version}.",
            )

    def _check_sessions(self, machine: Machine) -> None:
        """25 running sessions per tenant. docs silent on queued ones: a session counts from
        acceptance while its machine is online (so it is running or about to), not while it
        waits queued for an offline machine; so a request for an offline machine is accepted.
        Part of section 7's table, so `rate_limits` switches it off too."""
        now = self._clock.elapsed()
        if not self._tenant.rate_limits or not machine.is_online(now):
            return
        running = [
            a
            for a in self._actions.values()
            if a.status == "InProgress" or (a.status == "Pending" and a.machine.is_online(now))
        ]
        if len(running) >= MAX_SESSIONS:
            timings = self._tenant.live_response
            wait = min(a.estimated_end(now, timings) for a in running) - now
            raise too_many_requests(
                self._clock, wait, f"The tenant already runs {MAX_SESSIONS} live response sessions. Retry later."
            )

    def all(self) -> list[dict[str, Any]]:
        return [a.to_json(self._clock) for a in self._ordered()]

    def _ordered(self) -> list[MachineAction]:
        """The actions the API shows: portal sessions are left out."""
        listed = (a for a in self._actions.values() if not a.from_portal)
        return sorted(listed, key=lambda a: (a.created, a.id))

    def select(self, page: Page) -> list[dict[str, Any]]:
        return [dict(item) for item in page.apply(self.all())]

    def _find(self, action_id: str) -> MachineAction:
        action = self._actions.get(action_id.lower())
        if action is None or action.from_portal:
            raise not_found(f"Machine action {action_id[:100]}")
        return action

    def get(self, action_id: str) -> dict[str, Any]:
        return self._find(action_id).to_json(self._clock)

    def cancel(self, action_id: str, body: Any, requestor: str) -> dict[str, Any]:
        action = self._find(action_id)
        body = json_object(body)
        check_properties(body, ("Comment",), ("Comment",))
        if not isinstance(body["Comment"], str):
            raise ApiError(400, "InvalidRequestBody", "'Comment' must be a string.")
        if not action.active:
            # docs: only non-final actions can be cancelled; silent on the code: 400 BadRequest.
            raise ApiError(
                400,
                "BadRequest",
                f"Machine action {action.id} is {action.status}; only a pending or running action can be cancelled.",
            )
        action.cancel(self._clock.elapsed(), requestor, body["Comment"])
        return action.to_json(self._clock)

    def download_link(self, action_id: str, arguments: str, origin: str) -> str:
        action = self._find(action_id)
        match = re.fullmatch(r"\s*index\s*=\s*(\d{1,6})\s*", arguments, re.IGNORECASE)
        if match is None:
            raise ApiError(400, "InvalidInput", "Expected GetLiveResponseResultDownloadLink(index=<command index>).")
        index = int(match.group(1))
        if index >= len(action.commands):
            raise not_found(f"Command index {index} of machine action {action.id}")
        command = action.commands[index]
        if command.status != "Completed":
            raise ApiError(400, "BadRequest", f"Command {index} has no result: its status is {command.status}.")
        if command.result is None:
            raise ApiError(400, "BadRequest", f"Command {index} ({command.spec.type}) has no result to download.")
        return self.links.create(origin, action.id, index)

    def result(self, action_id: str, index: int) -> CommandResult | None:
        action = self._actions.get(action_id.lower())
        if action is None or index >= len(action.commands):
            return None
        return action.commands[index].result
