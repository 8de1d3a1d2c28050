"""Submissions to the Joe emulator through jbxapi: files (chunked and classic), URLs and sample URLs,
the analysis lifecycle on the emulated clock, verdicts from the scenario, and deletion."""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jbxapi
import pytest

from joedefender_emulators.joe import JoeEmulator
from joedefender_emulators.joe import app as joe_app

from .joe_fixtures import (
    API_KEY,
    SAMPLES,
    calls,
    client,
    error_of,
    inspect,
    raw_post,
    running_joe,
    scenario_raw,
    submission_record,
)

ANALYSIS_FIELDS = {
    "webid",
    "analysisid",
    "time",
    "status",
    "detection",
    "score",
    "threatname",
    "classification",
    "md5",
    "sha1",
    "sha256",
    "filename",
    "scriptname",
    "comments",
    "tags",
    "duration",
    "encrypted",
    "has_malwareconfig",
    "runs",
}
RUN_FIELDS = {"system", "detection", "score", "error", "yara", "sigma", "snort"}
CHUNK = 10 * 1024 * 1024  # jbxapi's chunk size


@pytest.fixture(scope="module")
def emulator() -> Iterator[JoeEmulator]:
    """Shared by the tests: each looks only at its own submissions, and the clock only moves on."""
    raw = scenario_raw(queue_seconds=60, analysis_seconds=600, quota_daily=1000, quota_monthly=1000)
    with running_joe(raw) as emulator:
        yield emulator


def _text(name: str) -> bytes:
    return str(SAMPLES[name]["text"]).encode()


def test_a_file_goes_submitted_running_finished_on_the_emulated_clock(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    submission_id = joe.submit_sample(("invoice.exe", io.BytesIO(_text("evil"))))["submission_id"]
    assert submission_id.isdigit()

    info = joe.submission_info(submission_id)
    assert info["status"] == "submitted"
    assert info["name"] == "invoice.exe"
    assert info["most_relevant_analysis"] is None
    [analysis] = info["analyses"]
    assert analysis["status"] == "submitted"
    assert analysis["detection"] == "unknown"

    emulator.clock.advance(61)
    info = joe.submission_info(submission_id)
    assert (info["status"], info["analyses"][0]["status"]) == ("running", "running")
    assert info["most_relevant_analysis"] is None

    emulator.clock.advance(600)
    info = joe.submission_info(submission_id)
    assert info["status"] == "finished"
    [analysis] = info["analyses"]
    assert info["most_relevant_analysis"] == {"webid": analysis["webid"], "detection": "malicious", "score": 96}
    assert set(analysis) == ANALYSIS_FIELDS
    assert analysis["webid"].isdigit()
    assert analysis["analysisid"].isdigit()
    assert analysis["webid"] != analysis["analysisid"]
    assert analysis["status"] == "finished"
    assert (analysis["detection"], analysis["score"]) == ("malicious", 96)
    assert (analysis["threatname"], analysis["classification"]) == ("Emotet", "ransomware")
    assert analysis["sha256"] == hashlib.sha256(_text("evil")).hexdigest()
    assert analysis["md5"] == hashlib.md5(_text("evil"), usedforsecurity=False).hexdigest()
    assert analysis["sha1"] == hashlib.sha1(_text("evil"), usedforsecurity=False).hexdigest()
    assert analysis["filename"] == "invoice.exe"
    assert analysis["scriptname"] == "default.jbs"
    assert analysis["duration"] == 600
    assert analysis["encrypted"] is False
    assert [r["system"] for r in analysis["runs"]] == ["w10x64_22h2", "w11x64_22h2"]
    assert all(set(r) == RUN_FIELDS and r["detection"] == "malicious" for r in analysis["runs"])
    started = datetime.fromisoformat(analysis["time"])
    assert started.utcoffset() == timedelta(0)
    assert abs(started - emulator.clock.now()) < timedelta(seconds=700)
    assert joe.analysis_info(analysis["webid"]) == analysis


def test_verdicts_by_sample_by_sha256_and_clean_by_default() -> None:
    meh_sha256 = hashlib.sha256(_text("meh")).hexdigest()
    raw = scenario_raw(
        queue_seconds=0,
        analysis_seconds=1,
        verdicts=[{"sha256": meh_sha256.upper(), "detection": "suspicious", "score": 40}],
    )
    with running_joe(raw) as emulator:
        joe = client(emulator)
        meh = joe.submit_sample(("meh.doc", io.BytesIO(_text("meh"))))["submission_id"]
        plain = joe.submit_sample(("plain.txt", io.BytesIO(b"nothing to see")))["submission_id"]
        emulator.clock.advance(2)
        assert joe.submission_info(meh)["most_relevant_analysis"]["detection"] == "suspicious"
        clean = joe.submission_info(plain)["analyses"][0]
        assert (clean["detection"], clean["score"], clean["threatname"]) == ("clean", 0, "")


def test_url_analyses_carry_the_url_and_no_hashes(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    submission_id = joe.submit_url("http://PHISH.example/login", params={"comments": "from alert 7"})["submission_id"]
    emulator.clock.advance(700)
    info = joe.submission_info(submission_id)
    assert info["name"] == "http://PHISH.example/login"
    [analysis] = info["analyses"]
    assert (analysis["detection"], analysis["score"], analysis["threatname"]) == ("malicious", 88, "Phish")
    assert (analysis["md5"], analysis["sha1"], analysis["sha256"]) == ("", "", "")
    assert analysis["filename"] == "http://PHISH.example/login"
    assert analysis["scriptname"] == "browseurl.jbs"
    assert analysis["comments"] == "from alert 7"
    record = submission_record(emulator, submission_id)
    assert (record["mode"], record["url"], record["sha256"]) == ("url", "http://PHISH.example/login", None)


def test_sample_url_submissions_are_recorded_as_such(emulator: JoeEmulator) -> None:
    submission_id = client(emulator).submit_sample_url("https://files.example/dropper.bin")["submission_id"]
    record = submission_record(emulator, submission_id)
    assert record["mode"] == "sample-url"
    assert record["url"] == "https://files.example/dropper.bin"
    assert record["webid"] is not None


def test_chunked_upload_over_10_mib_is_hashed_while_received(emulator: JoeEmulator, tmp_path: Path) -> None:
    data = os.urandom(CHUNK + 123_457)
    path = tmp_path / "big sample.exe"
    path.write_bytes(data)
    joe = client(emulator)
    chunk_calls = calls(emulator, "submission/chunked-sample")
    with path.open("rb") as handle:
        submission_id = joe.submit_sample(handle, params={"tags": ["alert-9"]})["submission_id"]

    record = submission_record(emulator, submission_id)
    assert record["chunked"] is True
    assert record["filename"] == "big sample.exe"  # jbxapi sends the file's base name
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["size"] == len(data)
    assert record["tags"] == ["alert-9"]
    sent = calls(emulator, "submission/chunked-sample") - chunk_calls
    assert sent == math.ceil(len(data) / CHUNK) == 2
    assert joe.submission_info(submission_id)["analyses"][0]["sha256"] == record["sha256"]


def test_classic_upload_records_the_filename_as_sent(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    chunk_calls = calls(emulator, "submission/chunked-sample")
    submission_id = joe.submit_sample(("Rechnung März.pdf.exe", io.BytesIO(b"%PDF")), _chunked_upload=False)[
        "submission_id"
    ]
    record = submission_record(emulator, submission_id)
    assert (record["filename"], record["chunked"], record["size"]) == ("Rechnung März.pdf.exe", False, 4)
    assert record["sha256"] == hashlib.sha256(b"%PDF").hexdigest()
    assert calls(emulator, "submission/chunked-sample") == chunk_calls


def test_an_empty_sample_finishes_without_an_analysis(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    submission_id = joe.submit_sample(("empty.bin", io.BytesIO(b"")), _chunked_upload=False)["submission_id"]
    info = joe.submission_info(submission_id)
    assert (info["status"], info["most_relevant_analysis"], info["analyses"]) == ("finished", None, [])


def _start_chunked(emulator: JoeEmulator, name: str = "parts.bin") -> str:
    response = raw_post(emulator, "submission/new", {"apikey": API_KEY, "accept-tac": "1", "chunked-sample": name})
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["submission_id"])


def _send_chunk(
    emulator: JoeEmulator, submission_id: str, data: bytes, index: int, **overrides: Any
) -> tuple[int, Any]:
    fields = {
        "apikey": API_KEY,
        "submission_id": submission_id,
        "file-size": 10,
        "chunk-size": 4,
        "chunk-count": 3,
        "current-chunk-index": index,
        "current-chunk-size": len(data),
        **overrides,
    }
    response = raw_post(emulator, "submission/chunked-sample", fields, {"chunk": ("chunk", data)})
    return response.status_code, response.json()


def test_a_chunked_submission_starts_only_once_every_chunk_arrived(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    submission_id = _start_chunked(emulator)
    assert submission_record(emulator, submission_id)["status"] == "uploading"
    assert _send_chunk(emulator, submission_id, b"0123", 1)[0] == 200
    assert _send_chunk(emulator, submission_id, b"4567", 2)[0] == 200
    info = joe.submission_info(submission_id)
    assert (info["status"], info["analyses"]) == ("submitted", [])
    assert submission_record(emulator, submission_id)["received"] == 8

    assert _send_chunk(emulator, submission_id, b"89", 3)[0] == 200
    record = submission_record(emulator, submission_id)
    assert record["sha256"] == hashlib.sha256(b"0123456789").hexdigest()
    assert (record["size"], record["status"]) == (10, "submitted")
    assert len(joe.submission_info(submission_id)["analyses"]) == 1


@pytest.mark.parametrize(
    ("sent", "problem"),
    [
        ([(b"0123", 2, {})], "current-chunk-index"),  # out of order
        ([(b"0123", 1, {}), (b"0123", 3, {})], "current-chunk-index"),  # skips one
        ([(b"012", 1, {})], "current-chunk-size"),  # shorter than chunk-size
        ([(b"0123", 1, {"current-chunk-size": 3})], "current-chunk-size"),  # size lies
        ([(b"0123", 1, {}), (b"4567", 2, {"file-size": 11})], "file-size"),  # totals changed
        ([(b"0123", 1, {"chunk-count": 2})], "chunk-count"),  # inconsistent totals
        ([(b"0123", 1, {}), (b"4567", 2, {}), (b"8", 3, {})], "current-chunk-size"),  # last too short
        ([(b"0123", 1, {}), (b"XXXX", 1, {})], "current-chunk-index"),  # a different chunk 1 again
    ],
)
def test_chunks_out_of_order_or_of_the_wrong_size_are_refused(
    emulator: JoeEmulator, sent: list[tuple[bytes, int, dict[str, Any]]], problem: str
) -> None:
    submission_id = _start_chunked(emulator)
    *accepted, (data, index, overrides) = sent
    for good, good_index, good_overrides in accepted:
        assert _send_chunk(emulator, submission_id, good, good_index, **good_overrides)[0] == 200
    status, body = _send_chunk(emulator, submission_id, data, index, **overrides)
    assert status == 400
    assert body["errors"][0]["code"] == 3
    assert problem in body["errors"][0]["message"]
    assert submission_record(emulator, submission_id)["status"] == "uploading"


def test_a_resent_chunk_is_taken_once(emulator: JoeEmulator) -> None:
    submission_id = _start_chunked(emulator)
    for data, index in [(b"0123", 1), (b"0123", 1), (b"4567", 2), (b"89", 3), (b"89", 3)]:
        assert _send_chunk(emulator, submission_id, data, index)[0] == 200
    record = submission_record(emulator, submission_id)
    assert record["sha256"] == hashlib.sha256(b"0123456789").hexdigest()
    assert len(record["webids"]) == 1


def test_chunks_for_a_submission_that_takes_none_are_refused(emulator: JoeEmulator) -> None:
    submission_id = client(emulator).submit_url("http://a.example/")["submission_id"]
    status, body = _send_chunk(emulator, submission_id, b"0123", 1)
    assert (status, body["errors"][0]["code"]) == (400, 3)
    status, body = _send_chunk(emulator, "999999", b"0123", 1)
    assert (status, body["errors"][0]["code"]) == (400, 3)


def test_tags_comments_and_systems_reach_the_analysis(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    params = {"tags": ["alert-1", "mde"], "comments": "alert 1 on host-a", "systems": ["w7x64_sp1_office"]}
    submission_id = joe.submit_sample(("a.exe", io.BytesIO(b"abc")), params=params)["submission_id"]
    [analysis] = joe.submission_info(submission_id)["analyses"]
    assert analysis["tags"] == ["alert-1", "mde"]
    assert analysis["comments"] == "alert 1 on host-a"
    assert [r["system"] for r in analysis["runs"]] == ["w7x64_sp1_office"]
    record = submission_record(emulator, submission_id)
    assert (record["comments"], record["systems"]) == ("alert 1 on host-a", ["w7x64_sp1_office"])


def test_deleting_a_submission_removes_it_and_its_analyses(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    submission_id = joe.submit_sample(("evil.exe", io.BytesIO(_text("evil"))))["submission_id"]
    webid = joe.submission_info(submission_id)["analyses"][0]["webid"]
    joe.submission_delete(submission_id)
    with pytest.raises(jbxapi.InvalidParameterError) as caught:
        joe.submission_info(submission_id)
    assert submission_id in caught.value.message
    with pytest.raises(jbxapi.InvalidParameterError):
        joe.analysis_info(webid)
    assert webid not in [a["webid"] for a in joe.analysis_search("evil.exe")]
    assert submission_record(emulator, submission_id)["deleted"] is True
    with pytest.raises(jbxapi.InvalidParameterError):
        joe.submission_delete(submission_id)


def test_deleting_an_analysis(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    submission_id = joe.submit_url("http://gone.example/")["submission_id"]
    webid = joe.submission_info(submission_id)["analyses"][0]["webid"]
    joe.analysis_delete(webid)
    with pytest.raises(jbxapi.InvalidParameterError):
        joe.analysis_info(webid)
    assert joe.submission_info(submission_id)["analyses"] == []
    [record] = [a for a in inspect(emulator, "analyses") if a["webid"] == webid]
    assert record["deleted"] is True


def test_submission_list_pages_through_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(joe_app, "PAGE_SIZE", 2)
    with running_joe() as emulator:
        joe = client(emulator)
        ids = {joe.submit_url(f"http://site{i}.example/")["submission_id"] for i in range(5)}
        joe.submission_delete(ids.pop())
        listed = list(joe.submission_list())
        assert sorted(s["submission_id"] for s in listed) == sorted(ids)
        assert all(s["status"] == "submitted" and s["name"].startswith("http://site") for s in listed)
        assert calls(emulator, "submission/list") == 2


def test_unknown_submission_id_is_code_3(emulator: JoeEmulator) -> None:
    response = raw_post(emulator, "submission/info", {"apikey": API_KEY, "submission_id": "31337"})
    assert response.status_code == 400
    code, message = error_of(response)
    assert code == 3
    assert re.search(r"31337.*no such submission", message)
