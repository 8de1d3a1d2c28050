"""Form fields as the Joe Sandbox API checks them: which parameters each endpoint knows, and what
a `submission/new` request asks for.

The real server answers an unknown parameter with code 3 `Unknown parameter X.` (joe-api.md §2.1);
it is how jbxapi learns that a server predates chunked uploads, so the check must be exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Literal

from joedefender_emulators.http import FormField
from joedefender_emulators.joe import errors

# jbxapi 3.25.0 `submission_defaults` (joe-api.md §2.1), split by how their values are checked.
SUBMISSION_VALUE_PARAMS = frozenset(
    {
        "systems",
        "comments",
        "analysis-time",
        "document-password",
        "archive-password",
        "command-line-argument",
        "localized-internet-country",
        "tags",
        "system-date",
        "language-and-locale",
        "encrypt-with-password",
        "browser",
        "delete-after-days",
        "proxy-mode-config",
        "priority",
        "office-files-password",
    }
)
SUBMISSION_BOOL_PARAMS = frozenset(
    {
        "analyze-on-reverser",
        "internet-access",
        "internet-simulation",
        "report-cache",
        "hybrid-code-analysis",
        "hybrid-decompilation",
        "ssl-inspection",
        "vba-instrumentation",
        "js-instrumentation",
        "java-jar-tracing",
        "dotnet-tracing",
        "email-notification",
        "start-as-normal-user",
        "archive-no-unpack",
        "hypervisor-based-inspection",
        "fast-mode",
        "secondary-results",
        "apk-instrumentation",
        "amsi-unpacking",
        "powershell-logging",
        "disable-chained-runs",
        "live-interaction",
        "url-reputation",
        "anti-evasion-date",
        "remote-assistance",
        "remote-assistance-view-only",
        "static-only",
        "export-to-jbxview",
    }
)
# Exactly one of these says what is submitted. `command-line` and `cookbook` are known to the real
# server but not emulated: a Defender connector submits files and URLs only.
MODE_PARAMS = ("sample", "chunked-sample", "url", "sample-url")
UNEMULATED_MODE_PARAMS = ("command-line", "cookbook")

_SUBMISSION_PARAMS = (
    SUBMISSION_VALUE_PARAMS
    | SUBMISSION_BOOL_PARAMS
    | {"accept-tac", "systems[]", "tags[]", *MODE_PARAMS, *UNEMULATED_MODE_PARAMS}
)
CHUNK_PARAMS = (
    "submission_id",
    "file-size",
    "chunk-size",
    "chunk-count",
    "current-chunk-index",
    "current-chunk-size",
    "chunk",
)

# Parameters each endpoint knows besides `apikey` (jbxapi sends exactly these; joe-api.md §2).
# docs silent: whether the real server rejects unknown parameters outside `submission/new`; the
# emulator does everywhere, so a client's typo shows up in tests instead of being ignored.
ENDPOINT_PARAMS: dict[str, frozenset[str]] = {
    "server/online": frozenset(),
    "server/info": frozenset(),
    "server/systems": frozenset(),
    "server/lia_countries": frozenset(),
    "server/languages_and_locales": frozenset(),
    "account/info": frozenset(),
    "submission/new": _SUBMISSION_PARAMS,
    "submission/chunked-sample": frozenset(CHUNK_PARAMS),
    "submission/info": frozenset({"submission_id", "include-reverser-analyses"}),
    "submission/delete": frozenset({"submission_id"}),
    "submission/list": frozenset({"pagination_next", "include-shared"}),
    "analysis/search": frozenset({"q", "include-reverser-analyses"}),
    "analysis/info": frozenset({"webid"}),
    "analysis/delete": frozenset({"webid"}),
    "analysis/list": frozenset({"pagination", "pagination_next", "include-reverser-analyses"}),
    "analysis/download": frozenset({"webid", "type", "run"}),
}

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MASKED = "***"


class Form:
    """The fields of one API request, with the checks every endpoint shares."""

    def __init__(self, fields: dict[str, list[FormField]]) -> None:
        self._fields = fields

    def names(self) -> list[str]:
        return list(self._fields)

    def has(self, name: str) -> bool:
        return name in self._fields

    def text(self, name: str) -> str | None:
        """The field's value (the last one when repeated, as PHP reads forms), or None."""
        values = self._fields.get(name)
        return values[-1].text if values else None

    def texts(self, name: str) -> list[str]:
        return [f.text for f in self._fields.get(name, [])]

    def field(self, name: str) -> FormField | None:
        values = self._fields.get(name)
        return values[-1] if values else None

    def required(self, name: str) -> str:
        """The field's value; an absent or empty field is code 2, as the real server answers."""
        value = self.text(name)
        if value is None or not value.strip():
            raise errors.missing(name)
        return value.strip()

    def integer(self, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.required(name)
        try:
            number = int(value)
        except ValueError:
            raise errors.invalid(name, "expected an integer") from None
        if number < minimum or (maximum is not None and number > maximum):
            upper = "" if maximum is None else f" and at most {maximum}"
            raise errors.invalid(name, f"expected at least {minimum}{upper}")
        return number

    def boolean(self, name: str) -> bool | None:
        value = self.text(name)
        if value is None:
            return None
        if value not in ("0", "1"):
            raise errors.invalid(name, "expected 0 or 1")
        return value == "1"

    def check_known(self, allowed: Iterable[str]) -> None:
        known = set(allowed)
        for name in self._fields:
            if name not in known:
                raise errors.joe_error(errors.INVALID_PARAMETER, f"Unknown parameter {name}.")


@dataclass(frozen=True)
class SubmissionRequest:
    """What a valid `submission/new` asks for; the sample's bytes travel separately and are never kept."""

    mode: Literal["file", "url", "sample-url"]
    chunked: bool
    name: str
    url: str
    systems: tuple[str, ...]
    tags: tuple[str, ...]
    comments: str
    params: dict[str, str | list[str]]


def parse_submission(form: Form, known_systems: Iterable[str]) -> SubmissionRequest:
    """Check a `submission/new` form the way the real server does and say what it submits."""
    _check_accept_tac(form)
    _check_values(form)
    systems = tuple(form.texts("systems[]") + form.texts("systems"))
    unknown_systems = sorted(set(systems) - set(known_systems))
    if unknown_systems:
        raise errors.invalid("systems[]", f"unknown system {unknown_systems[0]!r} (see server/systems)")
    tags = tuple(t for t in form.texts("tags[]") + form.texts("tags") if t)
    mode, chunked, name, url = _mode(form)
    return SubmissionRequest(
        mode=mode,
        chunked=chunked,
        name=name,
        url=url,
        systems=systems,
        tags=tags,
        comments=form.text("comments") or "",
        params=_recorded_params(form),
    )


def _check_accept_tac(form: Form) -> None:
    value = form.text("accept-tac")
    if value is None:
        raise errors.missing("accept-tac")
    if value != "1":
        # docs silent: the error for unaccepted terms; code 2 says what is missing.
        raise errors.joe_error(
            errors.MISSING_PARAMETER,
            "You must accept the Terms and Conditions (accept-tac=1) to submit.",
        )


def _check_values(form: Form) -> None:
    for name in SUBMISSION_BOOL_PARAMS:
        form.boolean(name)
    for name in ("analysis-time", "delete-after-days"):
        if form.has(name):
            form.integer(name, minimum=1)
    if form.has("priority"):
        form.integer("priority", minimum=1, maximum=10)
    system_date = form.text("system-date")
    if system_date is not None and not _is_date(system_date):
        raise errors.invalid("system-date", "expected YYYY-MM-DD")


def _is_date(value: str) -> bool:
    if not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _mode(form: Form) -> tuple[Literal["file", "url", "sample-url"], bool, str, str]:
    for name in UNEMULATED_MODE_PARAMS:
        if form.has(name):
            raise errors.joe_error(errors.INVALID_PARAMETER, f"Parameter {name} is not supported by this emulator.")
    given = [name for name in MODE_PARAMS if form.has(name)]
    if not given:
        raise errors.missing("sample (or chunked-sample, url, sample-url)")
    if len(given) > 1:
        raise errors.joe_error(
            errors.INVALID_PARAMETER, f"Give only one of {', '.join(MODE_PARAMS)}; got {', '.join(given)}."
        )
    mode = given[0]
    if mode == "sample":
        sample = form.field("sample")
        assert sample is not None
        return "file", False, sample.filename or "sample", ""
    value = form.required(mode)
    if mode == "chunked-sample":
        return "file", True, value, ""
    if any(c.isspace() for c in value):
        raise errors.invalid(mode, "not a URL")
    return ("url" if mode == "url" else "sample-url"), False, value, value


def _recorded_params(form: Form) -> dict[str, str | list[str]]:
    """The request's parameters for inspection: no key, no sample bytes, no passwords."""
    recorded: dict[str, str | list[str]] = {}
    for name in form.names():
        if name in ("apikey", "sample"):
            continue
        if name.endswith("[]"):
            recorded[name] = form.texts(name)
        elif "password" in name:
            recorded[name] = _MASKED
        else:
            recorded[name] = form.text(name) or ""
    return recorded
