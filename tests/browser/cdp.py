"""Headless Chromium from Debian's packages, driven over the Chrome DevTools Protocol.

A few dozen lines on the `websockets` client instead of a driver package: nothing is downloaded
at test time (no browser build, no driver), and the protocol gives what the page tests need
directly: a navigation's HTTP status, the DOM through `Runtime.evaluate`, a script that runs
before the page's own (to count Content-Security-Policy violations), and screenshots.

Chromium runs with the flags that work on these machines (no sandbox as root, no GPU, none of
its background connections) and a fresh profile, and is stopped with its process group.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]
START_TIMEOUT = 30.0
# Before the page's own code: every CSP violation is counted where the test can read it.
WATCH_VIOLATIONS = (
    "window.__violations = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
)


class BrowserError(AssertionError):
    pass


class Browser:
    def __init__(self, *, width: int = 1280, height: int = 900) -> None:
        self._profile = tempfile.mkdtemp(prefix="joedefender-chromium-")
        self._process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []
        self._stack = ExitStack()
        try:
            self._socket = self._stack.enter_context(
                connect(self._page_socket(), max_size=None, open_timeout=START_TIMEOUT)
            )
            for domain in ("Page", "Network", "Runtime"):
                self.call(f"{domain}.enable")
            self.call("Page.addScriptToEvaluateOnNewDocument", source=WATCH_VIOLATIONS)
            self.call(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
        except BaseException:
            self.close()
            raise

    def _page_socket(self) -> str:
        """The page target's DevTools socket, once Chromium has written its port."""
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while not port_file.exists() or not port_file.read_text().strip():
            if self._process.poll() is not None:
                raise BrowserError(f"chromium exited with {self._process.returncode} before it listened")
            if time.monotonic() > deadline:
                raise BrowserError("chromium did not open its DevTools port in time")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        return str(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self._socket.recv(timeout=max(0.01, deadline - time.monotonic())))
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            if "method" in message:
                self._events.append(message)

    def _wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self._events:
                if event["method"] == name:
                    self._events.remove(event)
                    return event
            message = json.loads(self._socket.recv(timeout=max(0.01, deadline - time.monotonic())))
            if "method" in message:
                self._events.append(message)

    def open(self, url: str, headers: dict[str, str] | None = None, timeout: float = 30.0) -> int:
        """Navigate and wait for the load event; the document's HTTP status."""
        self.call("Network.setExtraHTTPHeaders", headers=headers or {})
        self._events.clear()
        self.call("Page.navigate", url=url)
        self._wait_event("Page.loadEventFired", timeout)
        documents = [
            e["params"]["response"]["status"]
            for e in self._events
            if e["method"] == "Network.responseReceived" and e["params"].get("type") == "Document"
        ]
        if not documents:
            raise BrowserError(f"no document was received for {url}")
        return int(documents[-1])

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (the test's own code, by DevTools)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def href(self, selector: str, text: str) -> str:
        """Where the link among `selector` whose text is `text` leads (absolute)."""
        found = self.evaluate(f"[...document.querySelectorAll({selector!r})].find(a => a.innerText == {text!r})?.href")
        if not found:
            raise BrowserError(f"no link {text!r} among {selector}")
        return str(found)

    def screenshot(self, path: Path) -> None:
        """The whole page as PNG."""
        width, height = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        shot = self.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        )
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self._stack.close()
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)


def basic(secret: str) -> dict[str, str]:
    """The Authorization header a browser sends for HTTP Basic with `secret` as the password."""
    return {"Authorization": "Basic " + base64.b64encode(f"operator:{secret}".encode()).decode()}
