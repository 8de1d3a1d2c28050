"""The operator's page in headless Chromium over the webhook's real server, on the demo world
the emulators play: the figures `joedefender status` reports, the jobs with their verdicts, one
alert's history and its sample's steps, links that lead there, and no CSP violation (the
inlined style sheet is allowed by its hash, nothing else is needed)."""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console

from joedefender.bootstrap import Connector
from joedefender.hosts.standalone.poller import Poller
from joedefender.hosts.standalone.status import print_status
from joedefender.hosts.standalone.webhook import Webhook
from joedefender_emulators.scenario import load_scenario
from tests.browser.cdp import Browser
from tests.pipeline.test_end_to_end import DEMO_HEADLINES
from tests.world import World, drain

_AV_ALERT = "da638640000000000003_1003"  # collected from the quarantine: the longest history
_ALERT_ID = re.compile(r"da\d+_\d+")
_SAMPLE = re.compile(r"[0-9a-f]{64}|https?://\S+|[A-Za-z]:\\\S+")  # a hash, a URL, a path named on a command line


@dataclass
class _Demo:
    connector: Connector
    url: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Demo]:
    scenario = load_scenario().model_copy(update={"time_scale": 0.002})
    world = World(scenario, tmp_path_factory.mktemp("demo"), JoeSandboxResubmitAfterDays="7")
    with ExitStack() as stack:
        stack.callback(world.close)
        connector = stack.enter_context(world.connector())
        Poller(connector.app, interval=0, lookback=timedelta(days=3650)).poll_once()
        for alert in scenario.defender.alerts:
            connector.app.receive(alert["id"], source="test")
        drain(connector, 90)
        webhook = Webhook(connector.app, secret="a-webhook-secret-of-enough-length", host="127.0.0.1", port=0)
        webhook.start()
        stack.callback(webhook.stop)
        yield _Demo(connector, webhook.url)


def _status(connector: Connector, alert_id: str | None = None) -> list[list[str]]:
    """`joedefender status` as it prints, wide enough that no cell folds: each table row's cells."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=1000, color_system=None, no_color=True)
    assert print_status(connector.app.status, console, alert_id)
    rows = [line.split("│")[1:-1] for line in buffer.getvalue().splitlines() if line.startswith("│")]
    return [[cell.strip() for cell in row] for row in rows]


def _texts(browser: Browser, selector: str) -> list[str]:
    return list(browser.evaluate(f"[...document.querySelectorAll({selector!r})].map(e => e.innerText.trim())"))


def _figure(browser: Browser, ident: str) -> int:
    return int(browser.evaluate(f"document.querySelector('#{ident} b').innerText"))


def test_the_overview_shows_the_demos_figures_as_status_reports_them(browser: Browser, demo: _Demo) -> None:
    alerts = {row[0]: row[1] for row in _status(demo.connector) if _ALERT_ID.fullmatch(row[0])}
    commented = len(DEMO_HEADLINES)
    states = Counter(alerts.values())
    # the demo's ending, as the end-to-end test has it: each alert with a headline accepted, the rest skipped
    assert {a for a, state in alerts.items() if state == "accepted"} == set(DEMO_HEADLINES)
    assert states == {"accepted": commented, "skipped": len(alerts) - commented}
    jobs = [row for row in _status(demo.connector) if _SAMPLE.fullmatch(row[0])]

    assert browser.open(f"{demo.url}/ui") == 200
    assert _figure(browser, "alerts-total") == len(alerts)
    for state in ("received", "accepted", "skipped", "failed"):
        assert _figure(browser, f"alerts-{state}") == states.get(state, 0), state
    assert _figure(browser, "comments") == commented
    assert _figure(browser, "jobs-total") == len(jobs)
    # The chart: every alert came in within the last 24 hours, each commented or skipped.
    bars = browser.evaluate("[...document.querySelectorAll('#per-hour rect')].map(r => r.textContent)")
    per_series: Counter[str] = Counter()
    for title in bars:
        count, series = re.fullmatch(r"\d\d:00 UTC: (\d+) (.+)", title).groups()  # type: ignore[union-attr]
        per_series[series] += int(count)
    failed = sum(headline == "not analysed" for headline in DEMO_HEADLINES.values())  # a failure comment
    assert per_series == {
        "alerts in": len(alerts),
        "commented": commented,
        "skipped": states["skipped"],
        "failed": failed,
    }
    assert len(bars) == 24 * 4
    by_state = browser.evaluate("[...document.querySelectorAll('#jobs-by-state rect')].map(r => r.textContent)")
    assert f"done: {sum(row[1] == 'done' for row in jobs)}" in by_state
    # Every alert `status` lists is in the overview's list with the state `status` gives it.
    listed = browser.evaluate(
        "[...document.querySelectorAll('#recent-alerts tr')].slice(1)"
        ".map(r => [r.cells[0].innerText, r.cells[1].innerText])"
    )
    assert dict(listed) == alerts
    assert browser.evaluate("window.__violations") == []
    # The style sheet applied under the policy (the header's colour comes from it).
    assert browser.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor") == "rgb(31, 51, 71)"
    assert browser.evaluate("document.querySelectorAll('script').length") == 0


def test_the_jobs_page_lists_each_sample_with_the_verdict_status_shows(browser: Browser, demo: _Demo) -> None:
    # The jobs table's rows: a sample (sha256 or URL) first; the alerts table's start with an alert id.
    jobs = {row[0]: (row[1], row[4]) for row in _status(demo.connector) if _SAMPLE.fullmatch(row[0])}
    done = sum(state == "done" for state, _ in jobs.values())
    assert done >= 2

    assert browser.open(f"{demo.url}/ui") == 200
    jobs_link = browser.evaluate("document.querySelector('header nav a:nth-child(2)').getAttribute('href')")
    assert browser.open(f"{demo.url}{jobs_link}") == 200
    shown = browser.evaluate(
        "[...document.querySelectorAll('#jobs tr.job')]"
        ".map(r => [r.cells[0].innerText, r.cells[2].innerText, r.cells[3].innerText])"
    )
    assert {subject: (state, outcome) for subject, state, outcome in shown} == jobs
    assert "malicious 96 (known)" in [outcome for _, outcome in jobs.values()]
    # The state filter, from the page's own links.
    assert browser.open(browser.href("a", f"done ({done})")) == 200
    assert len(_texts(browser, "#jobs tr.job")) == done
    failed = sum(state == "failed" for state, _ in jobs.values())
    assert browser.open(browser.href("a", f"failed ({failed})")) == 200
    assert len(_texts(browser, "#jobs tr.job")) == failed
    assert browser.evaluate("window.__violations") == []


def test_an_alerts_page_shows_what_status_alert_id_shows(browser: Browser, demo: _Demo) -> None:
    """The alert's history and its sample's step history, line for line (time, step, outcome, detail)."""
    expected = [row for row in _status(demo.connector, _AV_ALERT) if row[0] != "time (UTC)"]
    assert len(expected) > 8

    assert browser.open(f"{demo.url}/ui") == 200
    assert browser.open(browser.href("#recent-alerts a", _AV_ALERT)) == 200
    lines = browser.evaluate(
        "[...document.querySelectorAll('table.history tr')].slice(0).filter(r => r.cells[0].tagName == 'TD')"
        ".map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    assert lines == expected
    samples = _texts(browser, "section.sample h2")
    assert len(samples) == 1
    assert "done" in samples[0]
    assert "malicious 100" in _texts(browser, "section.sample td.outcome")
    assert browser.evaluate("window.__violations") == []

    assert browser.open(f"{demo.url}/ui/alerts/da000000000000000000_404") == 404
    assert "no alert da000000000000000000_404 is known" in browser.evaluate("document.body.innerText")


def test_screenshot_of_the_overview(browser: Browser, demo: _Demo, tmp_path: Path) -> None:
    """The README's picture is what this browser draws of the demo (docs/operator-page.png is
    written by `python -m tests.browser.screenshot`); here: a PNG of the page's full height."""
    assert browser.open(f"{demo.url}/ui") == 200
    shot = tmp_path / "overview.png"
    browser.screenshot(shot)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    height = int.from_bytes(data[20:24], "big")
    assert height >= 900
