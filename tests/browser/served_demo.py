"""`joedefender demo --serve` as its own process: the demo runs, then its last lines give the
page's URL; Ctrl-C (SIGINT) stops it. The README's screenshot is taken from it:
`python -m tests.browser.served_demo docs/operator-page.png`."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.hosts import environment, joedefender

URL_LINE = "The operator's page shows the demo's state at "


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)  # everything printed, as it comes


@contextmanager
def served_demo(*args: str, timeout: float = 180.0) -> Iterator[Served]:
    """The demo with `--serve --port 0` and `args`; yields once the page's URL is printed."""
    process = subprocess.Popen(
        joedefender("demo", "--serve", "--port", "0", *args),
        env=environment({}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(URL_LINE):
                found.set()
        found.set()  # the process ended

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not found.wait(timeout) or not any(line.startswith(URL_LINE) for line in lines):
            raise AssertionError("the demo printed no URL:\n" + "\n".join(lines[-30:]))
        url = next(line for line in lines if line.startswith(URL_LINE))[len(URL_LINE) :].strip()
        yield Served(process, url, lines)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        reader.join(timeout=10)


def main(target: Path) -> None:
    from tests.browser.cdp import Browser

    with served_demo() as served:
        browser = Browser(width=1280, height=900)
        try:
            assert browser.open(served.url) == 200
            browser.screenshot(target)
        finally:
            browser.close()
    print(f"wrote {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
