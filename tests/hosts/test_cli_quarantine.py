"""`joedefender quarantine decode`, run as its own process on quarantine folders built with the
emulator's independent encoder (Defender's real layout)."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from joedefender.formats.defender_quarantine import MAX_PAYLOAD_BYTES
from joedefender.hosts.cli_quarantine import QUARANTINE_MAX_PAYLOAD_MIB
from joedefender_emulators.mde import hostile_quarantine as hostile
from joedefender_emulators.mde import quarantine as store
from tests.hosts import environment, joedefender

PAYLOAD = b"MZ stand-in payload, harmless\n"
HOSTILE_THREAT = "Trojan:Win32/[red]Evil[/red]\x1b[2J" + "A" * 400


def _decode(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        joedefender("quarantine", "decode", *args),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment({}),
    )


def _quarantine(root: Path, *items: tuple[str, str, bytes]) -> list[store.QuarantinedFile]:
    written = []
    for n, (threat, path, content) in enumerate(items):
        entry = store.quarantine(0x80000000 + n, threat, path, functools.partial(iter, [content]))
        entries = root / "Entries" / f"{{{entry.entry_id}}}"
        data = root / "ResourceData" / entry.resource_id[:2] / entry.resource_id
        for file, body in ((entries, entry.entries_bytes), (data, b"".join(entry.resource_chunks()))):
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(body)
        written.append(entry)
    return written


def test_a_quarantine_folder_is_listed_with_payload_hashes_and_nothing_is_written(tmp_path: Path) -> None:
    root = tmp_path / "Quarantine"
    _quarantine(
        root,
        ("Virus:DOS/EICAR_Test_File", "C:\\Windows\\Temp\\eicar.com", PAYLOAD),
        (HOSTILE_THREAT, "C:\\x.exe", b"2"),
    )
    before = sorted(p for p in tmp_path.rglob("*"))
    done = _decode(str(root))
    assert done.returncode == 0, done.stderr
    assert "Virus:DOS/EICAR_Test_File" in done.stdout
    assert "C:\\Windows\\Temp\\eicar.com" in done.stdout
    assert f"size:   {len(PAYLOAD)}" in done.stdout
    assert hashlib.sha256(PAYLOAD).hexdigest() in done.stdout
    assert hashlib.sha256(b"2").hexdigest() in done.stdout
    # Attacker strings: markup shown literally, control characters escaped, length bounded.
    assert "[red]Evil[/red]" in done.stdout
    assert "\x1b" not in done.stdout
    assert "\\u{001B}" in done.stdout
    assert "A" * 400 not in done.stdout
    assert PAYLOAD.decode() not in done.stdout
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_out_writes_the_one_payload_and_nowhere_else(tmp_path: Path) -> None:
    (entry,) = _quarantine(tmp_path / "Q", ("T", "C:\\a.exe", PAYLOAD))
    resource = tmp_path / "Q" / "ResourceData" / entry.resource_id[:2] / entry.resource_id
    out = tmp_path / "payload.bin"
    done = _decode(str(resource), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == PAYLOAD
    again = _decode(str(resource), "--out", str(out))
    assert again.returncode != 0
    assert "not overwritten" in again.stderr


def test_out_refuses_more_than_one_payload(tmp_path: Path) -> None:
    _quarantine(tmp_path / "Q", ("T", "C:\\a.exe", b"1"), ("T", "C:\\b.exe", b"2"))
    done = _decode(str(tmp_path / "Q"), "--out", str(tmp_path / "x.bin"))
    assert done.returncode == 2
    assert not (tmp_path / "x.bin").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "entries"])
def test_a_damaged_file_gets_one_line_naming_it_and_a_non_zero_exit(tmp_path: Path, damage: str) -> None:
    (entry,) = _quarantine(tmp_path / "Q", ("T", "C:\\a.exe", PAYLOAD))
    resource = tmp_path / "Q" / "ResourceData" / entry.resource_id[:2] / entry.resource_id
    entries = tmp_path / "Q" / "Entries" / f"{{{entry.entry_id}}}"
    if damage == "truncate":
        resource.write_bytes(resource.read_bytes()[:-30])
        broken = resource
    elif damage == "garbage":
        broken = resource.parent / ("F" * 40)
        broken.write_bytes(b"not a quarantine file at all")
    else:
        entries.write_bytes(entries.read_bytes()[:-3])
        broken = entries
    out = tmp_path / "payload.bin"
    done = _decode(str(broken), "--out", str(out)) if damage == "truncate" else _decode(str(tmp_path / "Q"))
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert broken.name in lines[0]
    assert "Traceback" not in done.stderr
    assert not out.exists()  # a partial payload is removed again


def _crafted_resource(root: Path, chunks: Iterator[bytes]) -> Path:
    """A ResourceData file someone planted: named as Defender names them, content crafted."""
    file = root / "ResourceData" / "AB" / ("AB" * 20)
    file.parent.mkdir(parents=True)
    file.write_bytes(b"".join(chunks))
    return file


def test_a_sparse_block_far_out_stops_at_the_limit_with_a_line_that_says_how_to_raise_it(tmp_path: Path) -> None:
    file = _crafted_resource(tmp_path, hostile.sparse_gap(1 << 40))  # 1 TiB of zeros, claimed in 36 bytes
    done = _decode(str(file))
    assert done.returncode == 1
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert f"exceeds the limit of {QUARANTINE_MAX_PAYLOAD_MIB << 20} bytes" in line
    assert "--max-payload-mib" in line
    assert "Traceback" not in done.stderr


def test_the_limit_can_be_raised_on_purpose(tmp_path: Path) -> None:
    file = _crafted_resource(tmp_path, hostile.sparse_gap(2 << 20))  # a payload of 2 MiB and 1 byte
    refused = _decode(str(file), "--max-payload-mib", "2")
    assert refused.returncode == 1
    assert "exceeds the limit of 2097152 bytes (2 MiB)" in refused.stderr
    raised = _decode(str(file), "--max-payload-mib", "3")
    assert raised.returncode == 0, raised.stderr
    assert f"size:     {(2 << 20) + 1}" in raised.stdout
    assert hashlib.sha256(bytes(2 << 20) + b"x").hexdigest() in raised.stdout


def test_the_clis_default_limit_is_the_decoders() -> None:
    assert QUARANTINE_MAX_PAYLOAD_MIB << 20 == MAX_PAYLOAD_BYTES
