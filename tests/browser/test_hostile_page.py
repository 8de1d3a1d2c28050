"""Attacker text on the operator's page, in headless Chromium: markup, script, event handlers and
bidi characters in file names, threat names and URLs render as text. No element is injected, no
script runs (`window.__pwned` stays undefined), nothing is even attempted that the
Content-Security-Policy would have to block (no violation), and the bidi override is shown as
`\\u{202E}` instead of reordering what the operator reads. Off loopback every page answers 401
without the webhook secret.

The strings reach the store two ways: through the pipeline, from a scenario the emulators play
(the alert's evidence, Joe's threat name), and planted raw in the records and histories (as a
store written by an older version, or by anything that skipped `shown`, would hold them), so the
page's own escaping is what is tested.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from joedefender.adapters.sqlite import SqliteStore
from joedefender.domain.jobs import AlertRecord, AlertState, Candidate, JobState, SampleJob
from joedefender.domain.keys import alert_subject
from joedefender.domain.reasons import Cause, Reason
from joedefender.hosts.standalone.webhook import Webhook
from tests.browser.cdp import Browser, basic
from tests.pipeline.builders import alert, file_evidence, machine, world
from tests.world import World, drain, scenario

PWN = "window.__pwned=1"
IMG = f'<img src=x onerror="{PWN}">'
SCRIPT = f"<script>{PWN}</script>"
MARKUP = f'</td></tr></table><h1 id="injected">forged</h1><a id="js" href="javascript:{PWN}">x</a><svg onload="{PWN}">'
BIDI = "\u202e"
FILE_NAME = f"invoice{BIDI}fdp{IMG}{SCRIPT}.exe"
PATH = "C:\\Users\\x\\Downloads\\" + FILE_NAME
THREAT = f"Emotet{SCRIPT}{MARKUP}{BIDI}"
URL = f"http://evil.example/{IMG}{SCRIPT}"
SECRET = "a-webhook-secret-of-enough-length-Z9"
PLANTED_ALERT = "da999999999999999999_9999"
PLANTED_KEY = "sha256:" + "f" * 64
# What may be on the page: no element that attacker text could have made.
INJECTED = "img, script, iframe, object, embed, #injected, #js, [onerror], [onload], a[href^='javascript']"


@dataclass
class _Hostile:
    url: str  # the webhook on loopback
    exposed: str  # the same state behind a webhook bound beyond loopback
    alert_ids: list[str]


def _plant(store: SqliteStore, now: float) -> None:
    """Records and history lines holding the raw strings, bypassing every `shown` of the pipeline."""
    job = SampleJob(
        key=PLANTED_KEY,
        kind="file",
        sha256="f" * 64,
        file_name=FILE_NAME,
        state=JobState.FAILED,
        created_at=now,
        updated_at=now,
        candidates=[Candidate(machine_id="ab" * 20, alert_id=PLANTED_ALERT, file_name=FILE_NAME, threat_name=THREAT)],
        failure=Cause(reason=Reason.NOT_COLLECTED, detail=f"{IMG}{MARKUP}{BIDI}"),
    )
    record = AlertRecord(
        alert_id=PLANTED_ALERT,
        received_at=now,
        state=AlertState.ACCEPTED,
        summary=f"{SCRIPT}{BIDI}",
        samples=[PLANTED_KEY],
        source=IMG,
    )
    assert store.create("job", PLANTED_KEY, job.model_dump(mode="json")) is not None
    assert store.create("alert", PLANTED_ALERT, record.model_dump(mode="json")) is not None
    store.append_history(alert_subject(PLANTED_ALERT), f"triage{IMG}", f"odd{SCRIPT}", f"{MARKUP}{BIDI}{URL}")
    store.append_history(PLANTED_KEY, "collect", "failed", f"{FILE_NAME} {THREAT}")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Hostile]:
    alerts = [
        alert(1, 1, file_evidence("payload", PATH), threat=THREAT),
        alert(2, 1, {"entityType": "Url", "url": URL}, threat=THREAT),
    ]
    raw = world(
        samples={"payload": "payload bytes"},
        machines=[machine(1, files={PATH: "payload"})],
        alerts=alerts,
        verdicts=[{"sample": "payload", "detection": "malicious", "score": 97, "threatname": THREAT}],
    )
    w = World(scenario(raw), tmp_path_factory.mktemp("hostile"))
    with ExitStack() as stack:
        stack.callback(w.close)
        connector = stack.enter_context(w.connector())
        for a in alerts:
            connector.app.receive(a["id"], source="test")
        drain(connector, 60)
        _plant(connector.store, connector.app.now())  # type: ignore[arg-type]
        hooks = [
            Webhook(connector.app, secret=SECRET, host=host, port=0)
            for host in ("127.0.0.1", "0.0.0.0")  # noqa: S104 - the test reaches it on 127.0.0.1 only
        ]
        for hook in hooks:
            hook.start()
            stack.callback(hook.stop)
        port = int(hooks[1].url.rsplit(":", 1)[1])
        yield _Hostile(hooks[0].url, f"http://127.0.0.1:{port}", [*(a["id"] for a in alerts), PLANTED_ALERT])


def _clean(browser: Browser, where: str) -> str:
    """The page holds nothing attacker text made, ran nothing, was refused nothing; its text."""
    assert browser.evaluate(f"document.querySelectorAll({INJECTED!r}).length") == 0, where
    assert browser.evaluate("typeof window.__pwned") == "undefined", where
    assert browser.evaluate("window.__violations") == [], where
    text = str(browser.evaluate("document.body.innerText"))
    assert BIDI not in text, where
    return text


def test_hostile_strings_render_as_text_on_every_page(browser: Browser, hostile: _Hostile) -> None:
    assert browser.open(f"{hostile.url}/ui") == 200
    overview = _clean(browser, "overview")
    assert PLANTED_ALERT in overview

    assert browser.open(f"{hostile.url}/ui/jobs") == 200
    jobs = _clean(browser, "jobs")
    assert "invoice\\u{202E}fdp" + IMG + SCRIPT + ".exe" in jobs  # the file name, as text, the override visible
    assert "Emotet" + SCRIPT in jobs  # the threat name
    assert "could not collect the file: " + IMG in jobs  # the failure reason

    pages = {}
    for alert_id in hostile.alert_ids:
        assert browser.open(f"{hostile.url}/ui") == 200
        assert browser.open(browser.href("#recent-alerts a", alert_id)) == 200, alert_id
        pages[alert_id] = page = _clean(browser, alert_id)
        assert alert_id in page
    # The URL as the pipeline keeps it (read as a browser reads it: percent-encoded), and raw.
    assert "http://evil.example/%3Cimg%20src=x%20onerror=" in pages[hostile.alert_ids[1]]
    assert URL in pages[PLANTED_ALERT]
    assert f"triage{IMG}" in page  # the planted history line: step, outcome and detail as text
    assert f"odd{SCRIPT}" in page
    assert '<h1 id="injected">forged</h1>' in page
    assert "\\u{202E}" in page


def test_off_loopback_the_pages_answer_401_without_the_secret(browser: Browser, hostile: _Hostile) -> None:
    for path in ("/ui", "/ui/jobs", f"/ui/alerts/{PLANTED_ALERT}", "/ui/alerts/da000000000000000000_404"):
        assert browser.open(f"{hostile.exposed}{path}") == 401, path
        assert PLANTED_ALERT not in browser.evaluate("document.body.innerText")
        assert browser.open(f"{hostile.exposed}{path}", basic("not-the-secret")) == 401, path
        assert browser.open(f"{hostile.exposed}{path}?code={SECRET}") == 401, path  # never from the URL
    assert browser.open(f"{hostile.exposed}/ui", basic(SECRET)) == 200
    _clean(browser, "overview off loopback")
    assert browser.open(f"{hostile.exposed}/ui/alerts/{PLANTED_ALERT}", {"x-functions-key": SECRET}) == 200
    # On loopback the page is open, as `status` is to whoever reads the state file.
    assert browser.open(f"{hostile.url}/ui") == 200
