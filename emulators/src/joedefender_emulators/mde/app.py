"""The MDE API routes: each checks the token, the permission and the quota, then works on the
tenant under its lock."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

from joedefender_emulators.http import Handler, Request, Response, Router, json_response
from joedefender_emulators.mde import alerts, indicators, liveresponse, machines
from joedefender_emulators.mde.actions import CommandResult
from joedefender_emulators.mde.auth import Caller, EntraEndpoints, TokenService, authenticate, authorize
from joedefender_emulators.mde.common import API_ORIGIN, collection, entity, not_found, origin, read_json
from joedefender_emulators.mde.downloads import DOWNLOAD_PATH
from joedefender_emulators.mde.odata import parse_page
from joedefender_emulators.mde.ratelimit import RateLimiter
from joedefender_emulators.mde.state import TenantState

API = r"/api(?:/v1\.0)?"
_ID = r"(?P<id>[^/]+)"
_TENANT = r"/(?P<tenant>[^/]+)"

GuardedHandler = Callable[[Request, Caller], Response]


def _param(request: Request, name: str = "id") -> str:
    return unquote(request.params[name])


def _no_content() -> Response:
    return Response(204, b"")


class MdeApi:
    def __init__(self, state: TenantState, tokens: TokenService, entra: EntraEndpoints, limiter: RateLimiter) -> None:
        self._state = state
        self._tokens = tokens
        self._entra = entra
        self._limiter = limiter

    def register(self, router: Router) -> None:
        entra = self._entra
        router.add("POST", rf"{_TENANT}/oauth2/token", "token", entra.token_v1)
        router.add("POST", rf"{_TENANT}/oauth2/v2\.0/token", "token", entra.token_v2)
        router.add("GET", rf"{_TENANT}/\.well-known/openid-configuration", "openid-configuration", entra.openid_v1)
        router.add(
            "GET", rf"{_TENANT}/v2\.0/\.well-known/openid-configuration", "openid-configuration", entra.openid_v2
        )
        routes: list[tuple[str, str, str, GuardedHandler]] = [
            ("GET", "/alerts", "alerts.list", self._alerts_list),
            ("POST", "/alerts/batchUpdate", "alerts.batchUpdate", self._alerts_batch_update),
            ("GET", f"/alerts/{_ID}", "alerts.get", self._alerts_get),
            ("PATCH", f"/alerts/{_ID}", "alerts.update", self._alerts_update),
            ("GET", "/machines", "machines.list", self._machines_list),
            ("GET", f"/machines/{_ID}", "machines.get", self._machines_get),
            ("POST", f"/machines/{_ID}/runliveresponse", "liveresponse.run", self._run_live_response),
            ("GET", "/machineactions", "machineactions.list", self._actions_list),
            ("GET", f"/machineactions/{_ID}", "machineactions.get", self._actions_get),
            ("POST", f"/machineactions/{_ID}/cancel", "machineactions.cancel", self._actions_cancel),
            (
                "GET",
                f"/machineactions/{_ID}/GetLiveResponseResultDownloadLink(?:\\(|%28)(?P<args>[^/]*?)(?:\\)|%29)",
                "liveresponse.downloadLink",
                self._download_link,
            ),
            ("POST", "/libraryfiles", "libraryfiles.upload", self._library_upload),
            ("GET", "/libraryfiles", "libraryfiles.list", self._library_list),
            ("DELETE", f"/libraryfiles/{_ID}", "libraryfiles.delete", self._library_delete),
            ("POST", "/indicators", "indicators.submit", self._indicators_submit),
            ("POST", "/indicators/import", "indicators.import", self._indicators_import),
            ("POST", "/indicators/BatchDelete", "indicators.batchDelete", self._indicators_batch_delete),
            ("GET", "/indicators", "indicators.list", self._indicators_list),
            ("DELETE", f"/indicators/{_ID}", "indicators.delete", self._indicators_delete),
        ]
        for method, path, name, handler in routes:
            router.add(method, API + path, name, self._guarded(name, handler))
        router.add("GET", DOWNLOAD_PATH, "liveresponse.download", self._download)

    def _guarded(self, endpoint: str, handler: GuardedHandler) -> Handler:
        def serve(request: Request) -> Response:
            caller = authenticate(self._tokens, request.headers.get("Authorization"))
            authorize(caller, endpoint)
            self._limiter.check(caller.app_id, endpoint)
            with self._state.lock:
                self._state.live_response.settle()
                return handler(request, caller)

        return serve

    # ---- alerts ----

    def _alerts_list(self, request: Request, _: Caller) -> Response:
        page = parse_page(request.query, alerts.FILTERABLE, ("evidence",))
        return json_response(collection("Alerts", self._state.alerts.select(page)))

    def _alerts_get(self, request: Request, _: Caller) -> Response:
        return json_response(entity("Alerts", self._state.alerts.get(_param(request))))

    def _alerts_update(self, request: Request, caller: Caller) -> Response:
        alert = self._state.alerts.update(_param(request), read_json(request), caller.app_id, self._state.clock.now())
        return json_response(entity("Alerts", alert))

    def _alerts_batch_update(self, request: Request, caller: Caller) -> Response:
        self._state.alerts.batch_update(read_json(request), caller.app_id, self._state.clock.now())
        return Response(200, b"")

    # ---- machines and machine actions ----

    def _machines_list(self, request: Request, _: Caller) -> Response:
        page = parse_page(request.query, machines.FILTERABLE)
        directory = self._state.machines
        if not directory:
            raise not_found("No recent machines: any machine")
        items = [directory.render(m) for m in directory.all()]
        return json_response(collection("Machines", page.apply(items)))

    def _machines_get(self, request: Request, _: Caller) -> Response:
        machine = self._state.machines.find(_param(request))
        if machine is None:
            raise not_found(f"Machine {_param(request)[:100]}")
        return json_response(entity("Machines", self._state.machines.render(machine)))

    def _actions_list(self, request: Request, _: Caller) -> Response:
        page = parse_page(request.query, liveresponse.FILTERABLE)
        return json_response(collection("MachineActions", self._state.live_response.select(page)))

    def _actions_get(self, request: Request, _: Caller) -> Response:
        return json_response(entity("MachineActions", self._state.live_response.get(_param(request))))

    def _actions_cancel(self, request: Request, caller: Caller) -> Response:
        action = self._state.live_response.cancel(_param(request), read_json(request), caller.app_id)
        return json_response(entity("MachineActions", action))

    def _run_live_response(self, request: Request, caller: Caller) -> Response:
        action = self._state.live_response.run(_param(request), read_json(request), caller.app_id)
        return json_response(entity("MachineActions", action), status=201)

    def _download_link(self, request: Request, _: Caller) -> Response:
        url = self._state.live_response.download_link(_param(request), _param(request, "args"), origin(request))
        return json_response({"@odata.context": f"{API_ORIGIN}/api/$metadata#Edm.String", "value": url})

    def _download(self, request: Request) -> Response:
        """The blob behind a download link: no bearer token, the SAS signature is the credential."""
        live_response = self._state.live_response

        def lookup(action_id: str, index: int) -> CommandResult | None:
            with self._state.lock:
                return live_response.result(action_id, index)

        return live_response.links.serve(request, lookup)

    # ---- library ----

    def _library_upload(self, request: Request, caller: Caller) -> Response:
        entry = self._state.library.upload(
            request.headers.get("Content-Type", ""), request.form(), caller.app_id, self._state.clock.now()
        )
        return json_response(entity("LibraryFiles", entry.to_json()))

    def _library_list(self, _: Request, __: Caller) -> Response:
        return json_response(collection("LibraryFiles", [f.to_json() for f in self._state.library.all()]))

    def _library_delete(self, request: Request, _: Caller) -> Response:
        self._state.library.delete(_param(request))
        return _no_content()

    # ---- indicators ----

    def _indicators_submit(self, request: Request, caller: Caller) -> Response:
        return json_response(entity("Indicators", self._state.indicators.submit(read_json(request), caller)))

    def _indicators_import(self, request: Request, caller: Caller) -> Response:
        results = self._state.indicators.import_batch(read_json(request), caller)
        return json_response(collection("Collection(microsoft.windowsDefenderATP.api.ImportIndicatorResult)", results))

    def _indicators_list(self, request: Request, caller: Caller) -> Response:
        page = parse_page(request.query, indicators.FILTERABLE)
        return json_response(collection("Indicators", self._state.indicators.select(page, caller)))

    def _indicators_delete(self, request: Request, caller: Caller) -> Response:
        self._state.indicators.delete(_param(request), caller)
        return _no_content()

    def _indicators_batch_delete(self, request: Request, caller: Caller) -> Response:
        self._state.indicators.batch_delete(read_json(request), caller)
        return _no_content()
