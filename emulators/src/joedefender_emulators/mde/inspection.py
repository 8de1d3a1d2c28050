"""The /_emulator/ surface for tests and benchmarks: what the tenant holds now, without auth."""

from __future__ import annotations

from urllib.parse import unquote

from joedefender_emulators.http import Request, Response, Router, json_response
from joedefender_emulators.mde.auth import TokenService
from joedefender_emulators.mde.common import not_found
from joedefender_emulators.mde.state import TenantState


class Inspection:
    def __init__(self, state: TenantState, tokens: TokenService) -> None:
        self._state = state
        self._tokens = tokens

    def register(self, router: Router) -> None:
        router.add("GET", r"/_emulator/alerts", "inspect", self._alerts)
        router.add("GET", r"/_emulator/indicators", "inspect", self._indicators)
        router.add("GET", r"/_emulator/machineactions", "inspect", self._actions)
        router.add("GET", r"/_emulator/library", "inspect", self._library)
        router.add("GET", r"/_emulator/machines/(?P<id>[^/]+)/files", "inspect", self._files)
        router.add("POST", r"/_emulator/tokens/revoke", "inspect", self._revoke)
        router.add("POST", r"/_emulator/alerts/(?P<id>[^/]+)/evidence", "inspect", self._add_evidence)

    def _alerts(self, _: Request) -> Response:
        with self._state.lock:
            return json_response({"value": self._state.alerts.all()})

    def _indicators(self, _: Request) -> Response:
        """Every stored indicator, expired ones included (the API hides those)."""
        with self._state.lock:
            return json_response({"value": self._state.indicators.all()})

    def _actions(self, _: Request) -> Response:
        with self._state.lock:
            self._state.live_response.settle()
            return json_response({"value": self._state.live_response.all()})

    def _library(self, _: Request) -> Response:
        with self._state.lock:
            return json_response({"value": [f.to_json() for f in self._state.library.all()]})

    def _files(self, request: Request) -> Response:
        machine_id = unquote(request.params["id"])
        with self._state.lock:
            self._state.live_response.settle()
            machine = self._state.machines.find(machine_id)
            if machine is None:
                raise not_found(f"Machine {machine_id[:100]}")
            files = self._state.files[machine.id]
            return json_response(
                {
                    "machineId": machine.id,
                    "files": files.listing(),
                    "folders": files.folder_listing(),
                    "quarantine": files.quarantine_listing(),
                    "restores": list(files.restores),
                    **files.posix_details(),
                }
            )

    def _add_evidence(self, request: Request) -> Response:
        """Defender adding evidence to an alert after it was raised (as investigations do)."""
        body = request.json()
        with self._state.lock:
            alert = self._state.alerts.add_evidence(unquote(request.params["id"]), body, self._state.clock.now())
        return json_response(alert)

    def _revoke(self, _: Request) -> Response:
        return json_response({"revoked": self._tokens.revoke_all()})
