"""Tests of the standalone service and the command line; helpers to run `joedefender` as its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from joedefender.settings import SETTING_NAMES


def joedefender(*args: str) -> list[str]:
    """The command line that runs `joedefender ARGS` with this interpreter (the project's venv)."""
    return [sys.executable, "-m", "joedefender", *args]


def environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any joedefender setting of its own, plus `settings`,
    and wide enough for rich to print its tables without folding them."""
    names = {name.lower() for name in SETTING_NAMES}
    inherited = {k: v for k, v in os.environ.items() if k.lower() not in names}
    return inherited | {"COLUMNS": "250", "NO_COLOR": "1"} | {k: str(v) for k, v in settings.items()}


def run_joedefender(*args: str, settings: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`joedefender ARGS` run to its end as its own process with `settings`, its output captured."""
    return subprocess.run(
        joedefender(*args), env=environment(settings), capture_output=True, text=True, timeout=timeout, check=False
    )
