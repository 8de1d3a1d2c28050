"""`joedefender demo`: on its own it ends (scripts and checks run it unattended); with `--serve`
its last lines give the operator page's URL, the page shows the demo's alerts in Chromium until
Ctrl-C, and Ctrl-C ends it cleanly. The demo runs here on its own scenario sped up five times."""

from __future__ import annotations

import re
import signal
import subprocess
from importlib import resources
from pathlib import Path

from tests.browser.cdp import Browser
from tests.browser.served_demo import URL_LINE, served_demo
from tests.hosts import environment, joedefender
from tests.pipeline.test_end_to_end import DEMO_HEADLINES


def _fast_demo(folder: Path) -> Path:
    text = resources.files("joedefender_emulators").joinpath("scenarios/demo.yaml").read_text("utf-8")
    fast = re.sub(r"(?m)^time_scale: .*$", "time_scale: 0.002", text)
    assert fast != text
    path = folder / "demo-fast.yaml"
    path.write_text(fast)
    return path


def test_the_plain_demo_ends_on_its_own(tmp_path: Path) -> None:
    done = subprocess.run(
        joedefender("demo", "--scenario", str(_fast_demo(tmp_path))),
        env=environment({}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.rstrip().splitlines()[-1].startswith("Demo finished in")
    assert URL_LINE not in done.stdout


def test_demo_serve_keeps_the_page_up_until_ctrl_c(browser: Browser, tmp_path: Path) -> None:
    with served_demo("--scenario", str(_fast_demo(tmp_path))) as served:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/ui", served.url)
        at = next(n for n, line in enumerate(served.lines) if line.startswith(URL_LINE))
        assert served.lines[at - 1].startswith("Demo finished in")  # the URL line follows the demo's end
        assert browser.open(served.url) == 200
        # every alert the demo's poller took in is counted and listed (those the filters skip are not)
        total = int(browser.evaluate("document.querySelector('#alerts-total b').innerText"))
        assert total == len(browser.evaluate("[...document.querySelectorAll('#recent-alerts tr')].slice(1)"))
        assert total >= len(DEMO_HEADLINES)
        assert browser.open(browser.href("#recent-alerts a", "da638640000000000001_1001")) == 200
        assert "malicious 92" in browser.evaluate("document.body.innerText")
        assert served.process.poll() is None  # still serving
        served.process.send_signal(signal.SIGINT)
        assert served.process.wait(timeout=30) == 0
    assert served.lines[-1] == "Stopped serving the page."
