"""The operator's page as a Functions HTTP trigger: `GET /api/ui`, `/api/ui/jobs`,
`/api/ui/alerts/{id}` (`hosts.page`, as the standalone service serves it at /ui).

Its own function, at function level: the host checks the `ui` function's own key (or a host
key) before this code runs, and the intake key the Logic App holds opens intake only. A browser
can send that key only as the `code` query parameter, so the page's links carry the `code` the
request came with (see `hosts.page.links`). The page reads the store alone: when the Defender or
Joe settings are wrong, the runtime gives the store-only status and the page still answers.
"""

from __future__ import annotations

import logging

import azure.functions as func
from joedefender.hosts.azure.runtime import Runtime
from joedefender.hosts.page import Links, serve
from joedefender.hosts.page.render import HEADERS
from joedefender.pipeline.facade import StoreError
from joedefender.settings import ConfigurationError

logger = logging.getLogger("joedefender.functions")
ROUTE = "ui/{*path}"
# The host's routePrefix (host.json leaves it at its default, "api") and this function's route.
BASE = "/api/ui"
_CODE = "code"


def page(runtime: Runtime, req: func.HttpRequest) -> func.HttpResponse:
    path = req.route_params.get("path") or ""
    query = dict(req.params)
    links = Links(BASE, code=query.pop(_CODE, None))
    try:
        answer = serve(runtime.status(), f"/{path}", query, links)
    except (ConfigurationError, StoreError) as exc:
        logger.error("the page cannot read the state store: %s", exc)
        return func.HttpResponse(
            "the state store is not available (see the log)", status_code=503, headers=dict(HEADERS), charset="utf-8"
        )
    return func.HttpResponse(
        answer.body, status_code=answer.status, headers=answer.headers, mimetype="text/html", charset="utf-8"
    )
