"""Where the page's links point: under the host's base path, with the key the host needs.

The standalone service serves the page at /ui and takes its secret in a header (or Basic auth),
so its links carry nothing. The Functions host checks a function key before our code runs, and
a browser following a link can send it only as the `code` query parameter: there the links
carry the `code` the request came with (the URL the operator opened holds it already), and the
page's Referrer-Policy keeps it from leaving with a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode


@dataclass(frozen=True)
class Links:
    base: str  # "/ui" or "/api/ui": no trailing slash
    code: str | None = None  # the Functions key, carried from the request's own URL

    def __repr__(self) -> str:
        return f"Links(base={self.base!r}, code={'set' if self.code else 'none'})"

    def _href(self, path: str, **query: str | None) -> str:
        params = {name: value for name, value in query.items() if value is not None}
        if self.code is not None:
            params["code"] = self.code
        return f"{self.base}{path}" + (f"?{urlencode(params)}" if params else "")

    def overview(self) -> str:
        return self._href("")

    def jobs(self, state: str | None = None) -> str:
        return self._href("/jobs", state=state)

    def alert(self, alert_id: str) -> str:
        return self._href(f"/alerts/{quote(alert_id, safe='')}")
