"""The command line loads the emulators only when the emulate or demo command runs."""

from __future__ import annotations

import subprocess

import pytest

from tests.hosts import joedefender


def _imported_modules(*args: str) -> set[str]:
    """The modules `python -X importtime -m joedefender ARGS` imports."""
    command = joedefender(*args)
    done = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")} - {
        "package"
    }


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["version"],
        ["run", "--help"],
        ["check", "--help"],
        ["emulate", "--help"],
        ["demo", "--help"],
        ["quarantine", "decode", "--help"],
    ],
)
def test_commands_other_than_emulate_and_demo_do_not_import_the_emulators(args: list[str]) -> None:
    modules = _imported_modules(*args)
    assert "joedefender.hosts.cli" in modules  # the listing is real
    assert not {m for m in modules if m.split(".")[0] == "joedefender_emulators"}
    assert "joedefender.hosts.demo" not in modules


def test_quarantine_decode_help_does_not_load_the_decoder() -> None:
    modules = _imported_modules("quarantine", "decode", "--help")
    assert "joedefender.hosts.cli" in modules
    assert "joedefender.hosts.quarantine_decode" not in modules
    assert "joedefender.formats.defender_quarantine" not in modules
