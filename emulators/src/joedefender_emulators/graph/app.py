"""The Graph security routes: each checks the token's audience and roles and Graph's throttle,
then works on the shared tenant under its lock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from joedefender_emulators.graph import views
from joedefender_emulators.graph.common import FORBIDDEN, THROTTLED, bad_request, not_found, unauthorized
from joedefender_emulators.graph.incidents import IncidentStore, check_choice, check_comment
from joedefender_emulators.graph.query import page, parse_list_query
from joedefender_emulators.http import ApiError, Handler, Request, Response, Router, json_response
from joedefender_emulators.mde.common import origin, read_json
from joedefender_emulators.mde.ratelimit import MINUTE, Limit, RateLimiter
from joedefender_emulators.mde.state import TenantState
from joedefender_emulators.scenario import GraphScenario
from joedefender_emulators.tokens import GRAPH_RESOURCES, Caller, TokenRejected, TokenService

API = r"/v1\.0/security"
_ID = r"(?P<id>[^/]+)"

# GD includes/throttling-security-detections-incidents.md: 150 requests a minute per app per
# tenant for "any operation on alert"; whether incidents count apart is not said, so every
# /security call here shares the one budget.
SECURITY = "security"
LIMITS: Mapping[str, tuple[Limit, ...]] = {SECURITY: (Limit(150, MINUTE),)}

_ALERT_READ = ("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All")
_ALERT_WRITE = ("SecurityAlert.ReadWrite.All",)
_INCIDENT_READ = ("SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All")
_INCIDENT_WRITE = ("SecurityIncident.ReadWrite.All",)
_ALERT_UPDATABLE = ("status", "classification", "determination", "assignedTo")
_ALERT_STATUSES = ("new", "inProgress", "resolved")
_ALERT_CLASSIFICATIONS = ("unknown", "falsePositive", "truePositive", "informationalExpectedActivity")
_ALERT_DETERMINATIONS = (
    "unknown", "apt", "malware", "securityPersonnel", "securityTesting", "unwantedSoftware", "other",
    "multiStagedAttack", "compromisedUser", "phishing", "maliciousUserActivity", "clean", "insufficientData",
    "confirmedUserActivity", "lineOfBusinessApplication",
)  # fmt: skip

GuardedHandler = Callable[[Request, Caller], Response]


def _id(request: Request) -> str:
    return unquote(request.params["id"])


class GraphApi:
    def __init__(
        self, tenant: TenantState, incidents: IncidentStore, tokens: TokenService, graph: GraphScenario
    ) -> None:
        self._tenant = tenant
        self._incidents = incidents
        self._tokens = tokens
        self._graph = graph
        self.limiter = RateLimiter(tenant.clock, enabled=graph.rate_limits, limits=LIMITS)

    def register(self, router: Router) -> None:
        routes: list[tuple[str, str, str, tuple[str, ...], GuardedHandler]] = [
            ("GET", "/alerts_v2", "alerts_v2.list", _ALERT_READ, self._alerts_list),
            ("GET", f"/alerts_v2/{_ID}", "alerts_v2.get", _ALERT_READ, self._alerts_get),
            ("PATCH", f"/alerts_v2/{_ID}", "alerts_v2.update", _ALERT_WRITE, self._alerts_update),
            ("POST", f"/alerts_v2/{_ID}/comments", "alerts_v2.comments", _ALERT_WRITE, self._alerts_comment),
            ("GET", f"/incidents/{_ID}", "incidents.get", _INCIDENT_READ, self._incidents_get),
            ("PATCH", f"/incidents/{_ID}", "incidents.update", _INCIDENT_WRITE, self._incidents_update),
            ("POST", f"/incidents/{_ID}/comments", "incidents.comments", _INCIDENT_WRITE, self._incidents_comment),
        ]
        for method, path, name, roles, handler in routes:
            router.add(method, API + path, name, self._guarded(roles, handler))

    def _guarded(self, roles: tuple[str, ...], handler: GuardedHandler) -> Handler:
        def serve(request: Request) -> Response:
            try:
                caller = self._tokens.verify(request.headers.get("Authorization"), GRAPH_RESOURCES)
            except TokenRejected as exc:
                raise unauthorized(str(exc)) from None
            if not caller.roles.intersection(roles):
                raise ApiError(403, "Forbidden", FORBIDDEN)
            try:
                self.limiter.check(caller.app_id, SECURITY)
            except ApiError as exc:
                raise ApiError(429, "TooManyRequests", THROTTLED, exc.headers) from None
            with self._tenant.lock:
                return handler(request, caller)

        return serve

    # ---- alerts ----

    def visible(self) -> list[dict[str, Any]]:
        """What alerts_v2 lists: every alert of the tenant but standalone ones (no incident) and
        those a tuning rule suppressed (GD alertsv1-alertsv2-migration.md, Known differences)."""
        return [self._render(alert) for alert in self._tenant.alerts.stored() if self._listed(alert)]

    def rendered_all(self) -> list[dict[str, Any]]:
        """Every alert of the tenant in Graph's shape, listed by alerts_v2 or not (inspection)."""
        return [self._render(alert) for alert in self._tenant.alerts.stored()]

    def _listed(self, alert: Mapping[str, Any]) -> bool:
        return alert.get("incidentId") is not None and not self._tenant.alerts.graph[alert["id"]].get("suppressed")

    def _render(self, alert: Mapping[str, Any]) -> dict[str, Any]:
        machine = self._tenant.machines.by_id(str(alert.get("machineId") or ""))
        facet = self._tenant.alerts.graph[alert["id"]]
        return views.graph_alert(alert, facet, machine, self._tenant.tenant.tenant_id)

    def _find(self, alert_id: str) -> dict[str, Any]:
        alert = self._tenant.alerts.record(alert_id)
        if alert is None or not self._listed(alert):
            raise not_found(f"Alert {alert_id[:100]}")
        return self._render(alert)

    def _alerts_list(self, request: Request, _: Caller) -> Response:
        query = parse_list_query(request.query, default_top=self._graph.default_page_size, max_top=self._graph.max_top)
        url = f"{origin(request)}/v1.0/security/alerts_v2"
        return json_response(page(self.visible(), query, url=url, next_link=self._graph.next_link))

    def _alerts_get(self, request: Request, _: Caller) -> Response:
        return json_response(self._find(_id(request)))

    def _alerts_update(self, request: Request, caller: Caller) -> Response:
        alert_id = _id(request)
        self._find(alert_id)
        body = read_json(request)
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        unknown = set(body) - set(_ALERT_UPDATABLE) - {"@odata.type"}
        if unknown:  # `comment` among them: Graph takes comments only through POST .../comments
            raise bad_request(f"Invalid property '{sorted(unknown)[0][:60]}' for microsoft.graph.security.alert.")
        check_choice(body, "status", _ALERT_STATUSES)
        check_choice(body, "classification", _ALERT_CLASSIFICATIONS)
        check_choice(body, "determination", _ALERT_DETERMINATIONS)
        changes: dict[str, Any] = {key: views.pascal(body[key]) for key in _ALERT_UPDATABLE[:3] if key in body}
        if "assignedTo" in body:
            changes["assignedTo"] = body["assignedTo"]
        self._tenant.alerts.change(alert_id, changes, caller.app_id, self._tenant.clock.now())
        return json_response(self._find(alert_id))

    def _alerts_comment(self, request: Request, caller: Caller) -> Response:
        alert_id = _id(request)
        self._find(alert_id)
        text = check_comment(read_json(request))
        # Assumption (docs silent): Graph's comments of an MDE alert are the MDE API's, one store.
        self._tenant.alerts.change(alert_id, {"comment": text}, caller.app_id, self._tenant.clock.now())
        context = f"https://graph.microsoft.com/v1.0/$metadata#security/alerts_v2('{alert_id}')/comments"
        return json_response({"@odata.context": context, "value": self._find(alert_id)["comments"]})

    # ---- incidents ----

    def _incidents_get(self, request: Request, _: Caller) -> Response:
        incident = self._incidents.get(_id(request))
        expand = request.query.get("$expand")
        if expand is not None:
            if expand.strip().lower() != "alerts":
                raise bad_request(f"Cannot $expand '{expand[:40]}' here; only 'alerts'.")
            incident["alerts"] = [a for a in self.visible() if a["incidentId"] == incident["id"]]
        return json_response(incident)

    def _incidents_update(self, request: Request, _: Caller) -> Response:
        return json_response(self._incidents.update(_id(request), read_json(request), self._tenant.clock.now()))

    def _incidents_comment(self, request: Request, caller: Caller) -> Response:
        incident_id = _id(request)
        comments = self._incidents.add_comment(incident_id, read_json(request), caller.app_id, self._tenant.clock.now())
        context = f"https://graph.microsoft.com/v1.0/$metadata#security/incidents('{incident_id}')/comments"
        return json_response({"@odata.context": context, "value": comments})
