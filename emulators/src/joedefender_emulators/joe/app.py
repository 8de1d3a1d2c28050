"""The Joe Sandbox emulator: the REST API v2 routes jbxapi calls, on loopback.

`url` is the web base (what JoeSandboxBaseURL holds); the API is under `<url>/api`, so jbxapi's
`apiurl` is `<url>/api` and every call is `POST <url>/api/v2/<endpoint>` with form fields
(joe-api.md §1). Inspection routes live under `/_emulator/` and need no key.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from typing import Any

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.http import (
    EmulatorServer,
    FaultInjector,
    Request,
    Response,
    Router,
    Served,
    json_response,
)
from joedefender_emulators.joe import catalog, errors, reports, views
from joedefender_emulators.joe.params import ENDPOINT_PARAMS, Form, parse_submission
from joedefender_emulators.joe.state import ChunkHeader, JoeState
from joedefender_emulators.scenario import Scenario

PAGE_SIZE = 100  # docs silent: the real page size of the list endpoints

_Handler = Callable[[Form], Response]


def _ok(data: Any) -> Response:
    return json_response({"data": data})


class JoeEmulator(Served):
    """An emulated Joe Sandbox Cloud that works with the official, unmodified jbxapi client."""

    def __init__(self, scenario: Scenario, clock: EmulatedClock, port: int = 0) -> None:
        self.scenario = scenario
        self.clock = clock
        self.state = JoeState(scenario, clock)
        joe = scenario.joe
        listed = None if joe.systems is None else [(s.name, s.arch, s.description) for s in joe.systems]
        self._systems = catalog.systems((s for v in [*joe.verdicts, *joe.analyses] for s in v.systems), listed)
        self._system_names = [s["name"] for s in self._systems]
        router = Router()
        self._add_api_routes(router)
        router.add("GET", r"/_emulator/submissions", "inspect", self._inspect_submissions)
        router.add("GET", r"/_emulator/analyses", "inspect", self._inspect_analyses)
        router.add("GET", r"/analysis/(?P<id>\d+)(?:/.*)?", "web/analysis", self._web_analysis)
        faults = FaultInjector("joe", scenario.faults, seed=scenario.seed)
        self.server = EmulatorServer("joe", router, errors.render_error, clock, faults, port=port)

    @property
    def api_url(self) -> str:
        """What jbxapi takes as `apiurl`."""
        return self.server.url + "/api"

    # --- routing -----------------------------------------------------------------------------

    def _add_api_routes(self, router: Router) -> None:
        handlers: dict[str, _Handler] = {
            "server/online": lambda _: _ok({"online": self.scenario.joe.online}),
            "server/info": lambda _: _ok({"queuesize": self.state.queue_size()}),
            "server/systems": lambda _: _ok(self._systems),
            "server/lia_countries": lambda _: _ok([{"name": n} for n in catalog.LIA_COUNTRIES]),
            "server/languages_and_locales": lambda _: _ok([{"name": n} for n in catalog.LANGUAGES_AND_LOCALES]),
            "account/info": lambda _: _ok({"type": self.scenario.joe.account_type, "quota": self.state.quota()}),
            "submission/new": self._submission_new,
            "submission/chunked-sample": self._chunked_sample,
            "submission/info": self._submission_info,
            "submission/delete": self._submission_delete,
            "submission/list": self._submission_list,
            "analysis/search": self._analysis_search,
            "analysis/info": self._analysis_info,
            "analysis/delete": self._analysis_delete,
            "analysis/list": self._analysis_list,
            "analysis/download": self._analysis_download,
        }
        submits = {"submission/new", "submission/chunked-sample"}
        for name, handler in handlers.items():
            router.add("POST", "/api/v2/" + re.escape(name), name, self._endpoint(name, handler, name in submits))
        router.add("POST", r"/api/v2/.*", "unknown-endpoint", self._unknown_endpoint)

    def _endpoint(self, name: str, handler: _Handler, submits: bool) -> Callable[[Request], Response]:
        allowed = ENDPOINT_PARAMS[name] | {"apikey"}

        def handle(request: Request) -> Response:
            form = Form(request.form())
            self._authenticate(form)
            form.check_known(allowed)
            if submits and not self.scenario.joe.online:
                # docs silent: what maintenance mode refuses; submissions certainly, reads still work.
                raise errors.joe_error(
                    errors.SERVER_OFFLINE, "Joe Sandbox is in maintenance mode: submissions are paused."
                )
            with self.state.lock:
                return handler(form)

        return handle

    def _authenticate(self, form: Form) -> None:
        key = form.text("apikey")
        if not key:
            raise errors.missing("apikey")
        if not hmac.compare_digest(key.encode(), self.scenario.joe.api_key.encode()):
            raise errors.joe_error(errors.INVALID_API_KEY, "Invalid API key.")

    def _unknown_endpoint(self, request: Request) -> Response:
        endpoint = request.path.removeprefix("/api/v2/")
        raise errors.joe_error(errors.UNKNOWN_ENDPOINT, f"Unknown endpoint {endpoint}.")

    # --- submissions -------------------------------------------------------------------------

    def _submission_new(self, form: Form) -> Response:
        request = parse_submission(form, self._system_names)
        sample = form.field("sample")
        submission = self.state.submit(request, sample.value if sample is not None else None)
        return _ok({"submission_id": submission.submission_id})

    def _chunked_sample(self, form: Form) -> Response:
        submission_id = form.required("submission_id")
        header = ChunkHeader(
            file_size=form.integer("file-size", minimum=1),
            chunk_size=form.integer("chunk-size", minimum=1),
            chunk_count=form.integer("chunk-count", minimum=1),
            index=form.integer("current-chunk-index", minimum=1),
            size=form.integer("current-chunk-size", minimum=0),
        )
        chunk = form.field("chunk")
        if chunk is None:
            raise errors.missing("chunk")
        self.state.receive_chunk(submission_id, header, chunk.value)
        # docs silent: jbxapi ignores this answer beyond the envelope.
        return _ok({"submission_id": submission_id})

    def _submission_info(self, form: Form) -> Response:
        form.boolean("include-reverser-analyses")
        submission = self.state.submission(form.required("submission_id"))
        return _ok(views.submission(submission, self.clock, self.state.now()))

    def _submission_delete(self, form: Form) -> Response:
        self.state.delete_submission(form.required("submission_id"))
        return _ok({"deleted": True})  # docs silent: the answer; R7's schema shows this for analyses

    def _submission_list(self, form: Form) -> Response:
        form.boolean("include-shared")
        now = self.state.now()
        items = [views.submission_summary(s, self.clock, now) for s in self.state.submissions()]
        return _page(items, form)

    # --- analyses ----------------------------------------------------------------------------

    def _analysis_search(self, form: Form) -> Response:
        form.boolean("include-reverser-analyses")
        now = self.state.now()
        found = self.state.search(form.required("q"))
        return _ok([views.analysis(a, self.clock, now) for a in found])

    def _analysis_info(self, form: Form) -> Response:
        analysis = self.state.analysis(form.required("webid"))
        return _ok(views.analysis(analysis, self.clock, self.state.now()))

    def _analysis_delete(self, form: Form) -> Response:
        self.state.delete_analysis(form.required("webid"))
        return _ok({"deleted": True})

    def _analysis_list(self, form: Form) -> Response:
        form.boolean("include-reverser-analyses")
        items = [{"webid": a.webid} for a in self.state.analyses()]
        if form.boolean("pagination"):
            return _page(items, form)
        return _ok(items)

    def _analysis_download(self, form: Form) -> Response:
        analysis = self.state.analysis(form.required("webid"))
        report_type = form.required("type")
        run = form.integer("run") if form.text("run") else None
        if analysis.status(self.state.now()) != "finished":
            # docs silent: reports exist only once the analysis has finished.
            raise errors.invalid("webid", f"analysis {analysis.webid} has not finished; no reports yet")
        if analysis.encrypted:
            # docs silent: a real server sends an AES zip; the emulator does not hold the password.
            raise errors.joe_error(
                errors.PERMISSION_DENIED,
                f"Analysis {analysis.webid} is encrypted; the emulator serves no reports.",
            )
        return reports.download(analysis, report_type, run)

    # --- inspection and web ------------------------------------------------------------------

    def _inspect_submissions(self, _: Request) -> Response:
        with self.state.lock:
            now = self.state.now()
            items = [views.inspect_submission(s, self.clock, now) for s in self.state.submissions(include_deleted=True)]
        return json_response(items)

    def _inspect_analyses(self, _: Request) -> Response:
        with self.state.lock:
            now = self.state.now()
            items = [views.inspect_analysis(a, self.clock, now) for a in self.state.analyses(include_deleted=True)]
        return json_response(items)

    def _web_analysis(self, request: Request) -> Response:
        """The analysis page a comment links to (`<url>/analysis/<webid or analysisid>`)."""
        with self.state.lock:
            analysis = self.state.analysis_by_any_id(request.params["id"])
            if analysis is None:
                return Response(404, b"<!DOCTYPE html><p>No such analysis.</p>", {}, "text/html; charset=utf-8")
            page = reports.html_page(analysis, analysis.status(self.state.now()))
        return Response(200, page, {}, "text/html; charset=utf-8")


def _page(items: list[dict[str, Any]], form: Form) -> Response:
    """One page and, when more follow, the `pagination.next` token jbxapi passes back."""
    token = form.text("pagination_next")
    start = 0
    if token:
        if not token.isdigit() or int(token) > len(items):
            raise errors.invalid("pagination_next", "not a token this server gave out")
        start = int(token)
    body: dict[str, Any] = {"data": items[start : start + PAGE_SIZE]}
    if start + PAGE_SIZE < len(items):
        body["pagination"] = {"next": str(start + PAGE_SIZE)}
    return json_response(body)
