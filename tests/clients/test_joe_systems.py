"""Joe Sandbox systems by the platform of the device a sample came from: the settings, else the
server's list (read once), else the server's default; URLs and Windows samples keep
JoeSandboxSystems. Over real sockets against the Joe emulator."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from joedefender.adapters.joe import JoeSandboxAdapter
from joedefender.bootstrap import sandbox_client, system_chooser
from joedefender.domain.errors import Transient
from joedefender.domain.platforms import Platform
from joedefender_emulators.runner import Emulators

from .joe_fixtures import add_fault, calls, client_for, inspect, joe_world, settings_for

SERVER_SYSTEMS = [
    {"name": "w10x64_22h2", "arch": "WINDOWS"},
    {"name": "w11x64_office", "arch": "WINDOWS"},
    {"name": "lnxubuntu24", "arch": "LINUX"},
    {"name": "lnxdebian12", "arch": "LINUX"},
]  # no macOS system


@pytest.fixture
def world() -> Iterator[Emulators]:
    with joe_world({"systems": SERVER_SYSTEMS}) as emulators:
        yield emulators


def _adapter(world: Emulators, **overrides: str) -> closing[JoeSandboxAdapter]:
    settings = settings_for(world, **overrides)
    client = sandbox_client(settings, timeout=5.0, base_delay=0.01)
    return closing(JoeSandboxAdapter(client, system_chooser(client, settings)))


def _submitted_systems(world: Emulators) -> list[list[str]]:
    return [list(s["systems"]) for s in inspect(world, "submissions")]


def _submit(adapter: JoeSandboxAdapter, data: bytes, platform: Platform | None) -> str:
    return adapter.submit_file(io.BytesIO(data), "sample.bin", tags=(), comments=None, platform=platform)


def test_unset_settings_take_the_servers_first_system_of_that_os_read_once(world: Emulators) -> None:
    with _adapter(world, JoeSandboxSystems="w11x64_office") as adapter:
        _submit(adapter, b"an ELF", Platform.LINUX)
        add_fault(world, service="joe", path="server/systems", status=500)  # any later read would fail
        _submit(adapter, b"another ELF", Platform.LINUX)
        _submit(adapter, b"a Mach-O", Platform.MACOS)  # the server lists no macOS system
        _submit(adapter, b"an EXE", Platform.WINDOWS)
        _submit(adapter, b"an EXE of unknown origin", None)
        adapter.submit_url("http://example.test/", tags=(), comments=None)
    assert calls(world, "server/systems") == 1
    assert _submitted_systems(world) == [
        ["lnxubuntu24"],
        ["lnxubuntu24"],
        [],  # the server's default
        ["w11x64_office"],
        ["w11x64_office"],
        ["w11x64_office"],  # URLs keep JoeSandboxSystems
    ]


def test_settings_name_the_systems_per_os_and_the_server_list_is_not_read(world: Emulators) -> None:
    settings = {"JoeSandboxSystemsLinux": "lnxdebian12", "JoeSandboxSystemsMacOS": "w10x64_22h2"}
    with _adapter(world, **settings) as adapter:
        _submit(adapter, b"an ELF", Platform.LINUX)
        _submit(adapter, b"a Mach-O", Platform.MACOS)
        _submit(adapter, b"an EXE", Platform.WINDOWS)
    assert calls(world, "server/systems") == 0
    assert _submitted_systems(world) == [["lnxdebian12"], ["w10x64_22h2"], []]


def test_a_failed_systems_read_is_transient_and_submits_nothing(world: Emulators) -> None:
    add_fault(world, service="joe", path="server/systems", status=503, times=5)
    with _adapter(world) as adapter, pytest.raises(Transient) as raised:
        _submit(adapter, b"an ELF", Platform.LINUX)
    assert not raised.value.maybe_applied
    assert calls(world, "submission/new") == 0


def test_the_default_emulator_lists_windows_linux_and_macos_systems() -> None:
    with joe_world() as world:
        chooser = system_chooser(client_for(world), settings_for(world))
        choices: dict[Platform, Any] = {p: chooser.choose(p) for p in Platform}
    assert choices[Platform.LINUX].systems == ("lnxubuntu22",)
    assert choices[Platform.MACOS].systems == ("mac13",)
    assert choices[Platform.WINDOWS].systems == ()
    assert "JoeSandboxSystems unset" in choices[Platform.WINDOWS].describe()
