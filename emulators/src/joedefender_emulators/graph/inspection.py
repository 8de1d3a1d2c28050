"""The Graph emulator's /_emulator/ surface: the alerts as alerts_v2 shows them (standalone and
suppressed ones too, marked) and the incidents with their tags and comments, without auth."""

from __future__ import annotations

from joedefender_emulators.graph.app import GraphApi
from joedefender_emulators.graph.incidents import IncidentStore
from joedefender_emulators.http import Request, Response, Router, json_response
from joedefender_emulators.mde.state import TenantState


class Inspection:
    def __init__(self, tenant: TenantState, api: GraphApi, incidents: IncidentStore) -> None:
        self._tenant = tenant
        self._api = api
        self._incidents = incidents

    def register(self, router: Router) -> None:
        router.add("GET", r"/_emulator/alerts", "inspect", self._alerts)
        router.add("GET", r"/_emulator/incidents", "inspect", self._incidents_all)

    def _alerts(self, _: Request) -> Response:
        with self._tenant.lock:
            listed = {a["id"] for a in self._api.visible()}
            return json_response({"value": [{**a, "_listed": a["id"] in listed} for a in self._api.rendered_all()]})

    def _incidents_all(self, _: Request) -> Response:
        with self._tenant.lock:
            return json_response({"value": self._incidents.all()})
