"""The operator's page without a browser: its headers on every answer, its bounds on a store of
100,000 alerts, states and work kinds taken as the store holds them, the secret from Basic
authentication, and links that carry the Functions key they came with (tests/browser drives it
in Chromium; tests/azure serves it from the Functions app)."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from pathlib import Path

import httpx
import pytest

from joedefender.adapters.memory import MemoryStore
from joedefender.domain.jobs import AlertRecord, AlertState, JobState, SampleJob
from joedefender.hosts.page import Links, serve
from joedefender.hosts.page.render import CONTENT_SECURITY_POLICY
from joedefender.hosts.standalone.ui import basic_password
from joedefender.pipeline.facade import Clock, Status
from tests.hosts.webhook_rig import running_webhook


def _directives(policy: str) -> dict[str, str]:
    return {part.split()[0]: part.partition(" ")[2] for part in (p.strip() for p in policy.split(";")) if part}


def test_every_answer_carries_the_strict_headers_and_the_policy_allows_exactly_the_inlined_style(
    tmp_path: Path,
) -> None:
    with running_webhook(tmp_path / "state.db") as (webhook, _), httpx.Client(base_url=webhook.url) as client:
        paths = ["/ui", "/ui/", "/ui/jobs", "/ui/jobs?state=no%20such"]
        answers = {path: client.get(path) for path in [*paths, "/ui/alerts/da000000000000000000_1", "/ui/alerts/a%20b"]}
    assert {path: a.status_code for path, a in answers.items()} == {
        "/ui": 200,
        "/ui/": 200,
        "/ui/jobs": 200,
        "/ui/jobs?state=no%20such": 400,
        "/ui/alerts/da000000000000000000_1": 404,
        "/ui/alerts/a%20b": 400,
    }
    for path, answer in answers.items():
        assert answer.headers["content-type"] == "text/html; charset=utf-8", path
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    policy = _directives(CONTENT_SECURITY_POLICY)
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "script-src" not in policy  # default-src 'none': no script of any kind
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    # The one source allowed is the hash of the page's own <style> element.
    style = re.search(r"<style>(.*?)</style>", answers["/ui"].text, re.DOTALL)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert policy["style-src"] == f"'sha256-{digest}'"
    assert "<script" not in answers["/ui"].text


@pytest.mark.slow
def test_a_store_of_100000_alerts_gives_a_bounded_overview() -> None:
    """Every alert counts, none is listed beyond the most recent; the page's size does not grow."""
    store = MemoryStore()
    now = time.time()
    base = AlertRecord(alert_id="x", received_at=now, state=AlertState.SKIPPED).model_dump(mode="json")
    job = SampleJob(key="k", kind="file", created_at=now, updated_at=now, state=JobState.FAILED).model_dump(mode="json")
    work = store.unit_of_work()
    for n in range(100_000):
        alert_id = f"da{n:018d}_{n}"
        work.create("alert", alert_id, {**base, "alert_id": alert_id, "received_at": now - n, "triaged_at": now - n})
    for n in range(1_000):
        work.create("job", f"sha256:{n:064x}", {**job, "key": f"sha256:{n:064x}", "updated_at": now - n})
    work.commit()
    status = Status(store, Clock(source=lambda: now))

    overview = serve(status, "", {}, Links("/ui"))
    assert overview.status == 200
    assert len(overview.body) < 100_000
    assert re.search(r'id="alerts-total"><b>100000</b>', overview.body)
    assert re.search(r'id="alerts-skipped"><b>100000</b>', overview.body)
    assert overview.body.count('href="/ui/alerts/') == 50
    assert "the 50 most recent of 100000" in overview.body
    # The chart counts the hour under way and the 23 before it: one alert a second.
    first = (now // 3600 - 23) * 3600
    in_window = sum(1 for n in range(100_000) if now - n >= first)
    assert sum(int(n) for n in re.findall(r"UTC: (\d+) alerts in<", overview.body)) == in_window

    jobs = serve(status, "/jobs", {}, Links("/ui"))
    assert jobs.body.count('<tr class="job">') == 200
    assert "the 200 most recently updated of 1000" in jobs.body
    assert len(jobs.body) < 250_000


def test_states_and_work_kinds_show_as_the_store_holds_them() -> None:
    """A work kind this version does not know (another branch's) is counted by its name, and every
    job state of the table has its bar, zero or not."""
    store = MemoryStore()
    now = time.time()
    store.enqueue("evidence:some-alert", now)
    store.enqueue("sample:sha256:" + "0" * 64, now)
    status = Status(store, Clock(source=lambda: now))
    overview = status.overview()
    assert overview.work == {"evidence": 1, "sample": 1}
    assert list(overview.jobs) == [state.value for state in JobState]
    body = serve(status, "", {}, Links("/ui")).body
    assert "Work items queued: evidence" in body
    for state in JobState:
        assert f"<title>{state.value}: 0</title>" in body


def test_basic_authentication_gives_the_password_and_nothing_else() -> None:
    def header(text: str) -> bytes:
        return b"Basic " + base64.b64encode(text.encode())

    assert basic_password(header("operator:s3cret:with:colons")) == b"s3cret:with:colons"
    assert basic_password(header(":s3cret")) == b"s3cret"
    assert basic_password(b"basic " + base64.b64encode(b"u:p")) == b"p"
    assert basic_password(header("no colon")) is None
    assert basic_password(b"Basic not base64!") is None
    assert basic_password(b"Bearer abc") is None
    assert basic_password(None) is None


def test_links_carry_the_functions_key_they_came_with_and_never_show_it_in_a_repr() -> None:
    links = Links("/api/ui", code="the-key")
    assert links.overview() == "/api/ui?code=the-key"
    assert links.jobs("failed") == "/api/ui/jobs?state=failed&code=the-key"
    assert links.alert("da1_1") == "/api/ui/alerts/da1_1?code=the-key"
    assert "the-key" not in repr(links)
    assert Links("/ui").jobs() == "/ui/jobs"
