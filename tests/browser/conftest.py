"""One headless Chromium per test module (starting it takes half a second; a page, milliseconds).

Without Chromium the browser tests are skipped, unless JOEDEFENDER_REQUIRE_BROWSER=1 (CI sets it:
`make install` installs Chromium there)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.browser.cdp import CHROMIUM, Browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None and os.environ.get("JOEDEFENDER_REQUIRE_BROWSER") != "1":
        pytest.skip("chromium is not installed (make install installs it as root)")
    started = Browser()
    try:
        yield started
    finally:
        started.close()
