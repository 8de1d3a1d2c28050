"""The operator's page on the webhook's server: /ui, /ui/jobs, /ui/alerts/{id} (`hosts.page`).

On loopback the page is open, as `joedefender status` is to whoever can read the state file
(the webhook's loopback guard still refuses a foreign Host, so a DNS name rebound to 127.0.0.1
cannot read it from a web page). Beyond loopback it is behind the webhook secret, which a
browser sends as the password of HTTP Basic authentication (any user name) and a script in the
`x-functions-key` header: 401 without it. Basic rather than a login form and a session cookie:
nothing to store or sign, no form to forge, the browser forgets it when closed; the settings
already require TLS (or a proxy that terminates it) off loopback, so the password never
crosses a network in clear. The secret is never taken from the URL here, where it would land in
the browser's history and in proxies' logs.
"""

from __future__ import annotations

import base64
import binascii
import logging

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from joedefender.hosts.alert_intake import SECRET_HEADER, secret_matches
from joedefender.hosts.page import Answer, Links, serve
from joedefender.hosts.page.render import HEADERS
from joedefender.pipeline.facade import Status, StoreError

logger = logging.getLogger("joedefender.webhook")
BASE = "/ui"
_RENDERS = 2  # pages rendered at once: a large store's page must not take every thread from intake
_REALM = 'Basic realm="joedefender", charset="UTF-8"'


def basic_password(authorization: bytes | None) -> bytes | None:
    """The password of an HTTP Basic `Authorization` header; None for anything else."""
    if authorization is None:
        return None
    scheme, _, encoded = authorization.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    _, colon, password = decoded.partition(b":")
    return password if colon else None


def authorised(request: Request, secret: str | None, loopback: bool) -> bool:
    if loopback:
        return True
    if secret is None:  # the settings refuse this off loopback; refuse here too
        return False
    headers = dict(request.scope["headers"])
    offered = headers.get(SECRET_HEADER.encode()) or basic_password(headers.get(b"authorization"))
    return secret_matches(offered, secret)


def _response(answer: Answer) -> Response:
    return Response(answer.body.encode("utf-8"), status_code=answer.status, headers=answer.headers)


def page_routes(status: Status, *, secret: str | None, loopback: bool) -> list[Route]:
    limiter: list[anyio.CapacityLimiter] = []
    links = Links(BASE)

    async def page(request: Request) -> Response:
        if not authorised(request, secret, loopback):
            text = "the page needs the webhook secret (HTTP Basic password, or the x-functions-key header)"
            headers = {**HEADERS, "WWW-Authenticate": _REALM}
            return Response(text, status_code=401, headers=headers, media_type="text/plain")
        if not limiter:
            limiter.append(anyio.CapacityLimiter(_RENDERS))
        path = request.url.path[len(BASE) :]
        query = dict(request.query_params)
        try:
            answer: Answer = await anyio.to_thread.run_sync(serve, status, path, query, links, limiter=limiter[0])
        except StoreError as exc:
            logger.warning("the page could not read the state store: %s", exc)
            headers = {**HEADERS, "Retry-After": "5"}
            return Response("the state store does not answer", status_code=503, headers=headers)
        return _response(answer)

    paths = [BASE, f"{BASE}/", f"{BASE}/jobs", f"{BASE}/alerts/{{alert_id}}"]
    return [Route(path, page, methods=["GET"]) for path in paths]
