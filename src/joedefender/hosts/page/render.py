"""The template engine and the headers every page is sent with.

Jinja2 escapes everything it inserts (`autoescape=True` for every template, the SVG charts
included), and every value that may come from Defender, Joe or a device goes through the `text`
filter first: `domain.text.shown`, so it is one line, bounded, and its control, bidi and
invisible characters are shown escaped. Escaping makes markup harmless; `shown` makes a
right-to-left override or a newline visible instead of letting it rearrange what is read.

The style sheet is inlined and allowed by its hash: the Content-Security-Policy allows nothing
else (no script at all, no other source, no framing, no form), so even markup that escaped both
would neither run nor load anything.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from joedefender.domain.text import shown

FIELD = 200  # characters of one value, unless a template asks for another bound

CSS = resources.files("joedefender.hosts.page").joinpath("templates/page.css").read_text("utf-8")
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode("ascii")

CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CONTENT_TYPE = "text/html; charset=utf-8"


def text(value: object, limit: int = FIELD) -> str:
    """Attacker text made visible and bounded (the template escapes it afterwards)."""
    return shown(None if value is None else str(value), limit)


def when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("joedefender.hosts.page", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=False,
    )
    environment.filters["text"] = text
    environment.filters["when"] = when
    return environment


_ENVIRONMENT = _environment()


def render(template: str, **context: Any) -> str:
    return _ENVIRONMENT.get_template(template).render(css=CSS, **context)
