"""Result downloads: short-lived SAS-like links served outside /api, as blob storage would.

The link is signed (HMAC over path and expiry, with a key made per run) and carries no bearer
token. GetFile results are the gzip of the file, compressed chunk by chunk while streaming, so
a 200 MB sample never sits whole in memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.http import Request, Response
from joedefender_emulators.mde.actions import CommandResult
from joedefender_emulators.mde.common import parse_time

DOWNLOAD_PATH = (
    r"/investigation-actions-data/(?P<action>[0-9a-fA-F-]{36})/CustomPlaybookCommandOutput/(?P<index>\d{1,6})"
)
_SAS_VERSION = "2019-07-07"

ResultLookup = Callable[[str, int], CommandResult | None]


def gzip_stream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    # Level 1: samples are often incompressible, and speed matters more than size here.
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    for chunk in chunks:
        compressed = compressor.compress(chunk)
        if compressed:
            yield compressed
    yield compressor.flush()


class DownloadLinks:
    def __init__(self, clock: EmulatedClock, lifetime_seconds: float) -> None:
        self._clock = clock
        self._lifetime = lifetime_seconds
        self._key = secrets.token_bytes(32)
        # signature -> when the link runs out on the emulated timeline (`se` is the wall clock's)
        self._deadlines: dict[str, float] = {}

    def _sign(self, path: str, expiry: str) -> str:
        digest = hmac.new(self._key, f"{path}\n{expiry}".encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode("ascii")

    def create(self, origin: str, action_id: str, index: int) -> str:
        path = f"/investigation-actions-data/{action_id}/CustomPlaybookCommandOutput/{index}"
        # Whole seconds, rounded up: the link is valid at least the documented 30 minutes.
        runs_out = self._clock.elapsed() + self._lifetime
        deadline = self._clock.at(runs_out)
        if deadline.microsecond:
            deadline = deadline.replace(microsecond=0) + timedelta(seconds=1)
        expiry = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
        signature = self._sign(path, expiry)
        self._deadlines[signature] = max(runs_out, self._deadlines.get(signature, 0.0))
        query = urlencode({"se": expiry, "sp": "r", "sv": _SAS_VERSION, "sr": "b", "sig": signature})
        return f"{origin}{path}?{query}"

    def serve(self, request: Request, lookup: ResultLookup) -> Response:
        if request.headers.get("Authorization"):
            # docs silent: the SAS URL is its own credential; a bearer token sent along is refused
            # (and would be a token leaked to the storage host).
            return blob_error(403, "AuthenticationFailed", "Do not send an Authorization header with a SAS URL.")
        expiry, signature = request.query.get("se", ""), request.query.get("sig", "")
        expected = self._sign(request.path, expiry)
        if not hmac.compare_digest(signature.encode(), expected.encode()) or request.query.get("sp") != "r":
            return blob_error(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
                "correctly including the signature.",
            )
        deadline = parse_time(expiry)
        now = self._clock.now()
        if deadline is None or self._clock.elapsed() > self._deadlines.get(signature, -math.inf):
            return blob_error(
                403,
                "AuthenticationFailed",
                f"Signature not valid in the specified time frame: Expiry [{expiry}] - Current [{_http_time(now)}]",
            )
        result = lookup(request.params["action"], int(request.params["index"]))
        if result is None:
            return blob_error(404, "BlobNotFound", "The specified blob does not exist.")
        body = gzip_stream(result.content.chunks()) if result.gzip else result.content.chunks()
        return Response(
            200,
            body,
            {"x-ms-blob-type": "BlockBlob", "x-ms-version": _SAS_VERSION},
            content_type="application/octet-stream",
        )


def blob_error(status: int, code: str, message: str) -> Response:
    """Azure Storage answers in XML, not in the MDE error format."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?><Error>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}\nRequestId:{uuid.uuid4()}</Message></Error>"
    )
    return Response(status, body.encode("utf-8"), {"x-ms-error-code": code}, content_type="application/xml")


def _http_time(moment: datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
