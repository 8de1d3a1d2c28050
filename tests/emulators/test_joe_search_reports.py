"""Analyses Joe already holds, `analysis/search` and `analysis/list`, and `analysis/download` reports
with the Content-Disposition jbxapi parses."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import jbxapi
import pytest
import requests

from joedefender_emulators.joe import JoeEmulator

from .joe_fixtures import API_KEY, SAMPLES, VERDICTS, calls, client, running_joe, scenario_raw

EVIL_SHA256 = hashlib.sha256(str(SAMPLES["evil"]["text"]).encode()).hexdigest()
OTHER_SHA256 = "c0ffee" + "0" * 58
KNOWN: list[dict[str, Any]] = [
    {"sample": "evil", "detection": "malicious", "score": 90, "threatname": "Emotet", "age_days": 3},
    # an INEXACT match for a search by EVIL_SHA256: its file name holds that hash, its own hash differs
    {
        "sha256": OTHER_SHA256,
        "filename": f"copy_of_{EVIL_SHA256}.zip",
        "detection": "suspicious",
        "score": 50,
        "age_days": 10,
    },
    {"sample": "meh", "detection": "malicious", "score": 70, "encrypted": True, "age_days": 1},
    {"url": "http://known-bad.example/x", "detection": "malicious", "score": 80, "age_days": 2},
]


@pytest.fixture(scope="module")
def emulator() -> Iterator[JoeEmulator]:
    with running_joe(scenario_raw(analyses=KNOWN, queue_seconds=10, analysis_seconds=20)) as emulator:
        yield emulator


def _age(emulator: JoeEmulator, analysis: dict[str, Any]) -> timedelta:
    return emulator.clock.now() - datetime.fromisoformat(analysis["time"])


def _finished_webid(emulator: JoeEmulator, joe: Any, sample: tuple[str, bytes]) -> str:
    submission_id = joe.submit_sample((sample[0], io.BytesIO(sample[1])))["submission_id"]
    emulator.clock.advance(31)
    info = joe.submission_info(submission_id)
    assert info["status"] == "finished"
    return str(info["most_relevant_analysis"]["webid"])


def test_known_analyses_exist_before_the_run_dated_age_days_ago(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    found = joe.analysis_search(EVIL_SHA256)
    # other tests submit this sample too: the known analysis is the one older than a day
    [evil] = [a for a in found if a["sha256"] == EVIL_SHA256 and _age(emulator, a) > timedelta(days=1)]
    assert (evil["status"], evil["detection"], evil["score"], evil["threatname"]) == (
        "finished",
        "malicious",
        90,
        "Emotet",
    )
    evil_bytes = str(SAMPLES["evil"]["text"]).encode()
    assert evil["md5"] == hashlib.md5(evil_bytes, usedforsecurity=False).hexdigest()
    assert evil["filename"] == "evil"  # no filename given: the sample's name
    assert timedelta(days=3) <= _age(emulator, evil) < timedelta(days=3, hours=1)
    assert joe.analysis_info(evil["webid"]) == evil


def test_search_returns_inexact_matches_too(emulator: JoeEmulator) -> None:
    found = client(emulator).analysis_search(EVIL_SHA256)
    hashes = {a["sha256"] for a in found}
    assert hashes == {EVIL_SHA256, OTHER_SHA256}
    [inexact] = [a for a in found if a["sha256"] == OTHER_SHA256]
    assert EVIL_SHA256 in inexact["filename"]
    assert (inexact["md5"], inexact["sha1"]) == ("", "")  # a hash-only known analysis has no others


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (EVIL_SHA256.upper(), {EVIL_SHA256, OTHER_SHA256}),
        (hashlib.sha1(str(SAMPLES["evil"]["text"]).encode(), usedforsecurity=False).hexdigest(), {EVIL_SHA256}),
        ("COPY_OF_", {OTHER_SHA256}),
        ("known-bad.example", {""}),
        ("no-such-thing", set()),
    ],
)
def test_search_matches_hashes_names_and_urls_ignoring_case(
    emulator: JoeEmulator, query: str, expected: set[str]
) -> None:
    found = client(emulator).analysis_search(query)
    assert {a["sha256"] for a in found} == expected


def test_search_finds_new_submissions_by_comment_and_webid(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    submission_id = joe.submit_url("http://fresh.example/", params={"comments": "Alert da637-XYZ"})["submission_id"]
    webid = joe.submission_info(submission_id)["analyses"][0]["webid"]
    assert [a["webid"] for a in joe.analysis_search("da637-xyz")] == [webid]
    assert [a["webid"] for a in joe.analysis_search(webid)] == [webid]
    # still queued, yet searchable
    assert joe.analysis_search("fresh.example")[0]["status"] == "submitted"


def test_encrypted_known_analysis_is_flagged(emulator: JoeEmulator) -> None:
    meh_sha256 = hashlib.sha256(str(SAMPLES["meh"]["text"]).encode()).hexdigest()
    [meh] = client(emulator).analysis_search(meh_sha256)
    assert meh["encrypted"] is True
    with pytest.raises(jbxapi.PermissionError):
        client(emulator).analysis_download(meh["webid"], "iocjson")


def test_analysis_list_pages_through_every_analysis() -> None:
    many = [{"sha256": f"{i:064x}", "age_days": 1 + i / 100} for i in range(105)]
    with running_joe(scenario_raw(analyses=many)) as emulator:
        joe = client(emulator)
        listed = joe.analysis_list()
        assert len(listed) == 105
        assert len({a["webid"] for a in listed}) == 105
        assert calls(emulator, "analysis/list") == 2
        # newest first: the youngest known analysis is the one for hash 0
        assert joe.analysis_info(listed[0]["webid"])["sha256"] == f"{0:064x}"


def test_iocjson_carries_the_verdicts_iocs(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    webid = _finished_webid(emulator, joe, ("evil.exe", str(SAMPLES["evil"]["text"]).encode()))
    filename, body = joe.analysis_download(webid, "iocjson")
    assert filename == f"report-{webid}-iocjson.json"
    report = json.loads(body)["analysis"]
    assert report["domaininfo"]["domain"] == [
        {"@name": "c2.evil.example", "@ip": "unknown", "@malicious": "true"},
        {"@name": "cdn.example.org", "@ip": "unknown", "@malicious": "false"},
    ]
    assert report["ipinfo"]["ip"] == [{"@ip": "203.0.113.7", "@malicious": "true"}]
    assert report["urlinfo"]["url"] == [{"@name": "http://c2.evil.example/gate.php", "@malicious": "true"}]
    [dropped] = report["droppedinfo"]["hash"]
    assert dropped["@malicious"] == "true"
    assert dropped["@file"] == VERDICTS[0]["iocs"]["dropped"][0]["name"]
    assert dropped["value"] == [{"@algo": "SHA-256", "$": "ab" * 32}]


def test_jsonfixed_and_irjsonfixed_reports(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    webid = _finished_webid(emulator, joe, ("evil2.exe", str(SAMPLES["evil"]["text"]).encode()))
    name, body = joe.analysis_download(webid, "jsonfixed", run=1)
    assert name == f"report-{webid}-jsonfixed.json"
    full = json.loads(body)["analysis"]
    assert full["generalinfo"]["system"] == "w11x64_22h2"
    assert [d["@name"] for d in full["domaininfo"]["domain"]] == ["c2.evil.example", "cdn.example.org"]
    assert full["ipinfo"]["ip"][0]["@ip"] == "203.0.113.7"
    assert full["droppedinfo"]["hash"][0]["value"][0]["$"] == "ab" * 32

    _, body = joe.analysis_download(webid, "irjsonfixed")
    ir = json.loads(body)["analysis"]
    assert ir["detection"]["malicious"] is True
    assert ir["detection"]["clean"] is False
    assert ir["detection"]["score"] == 96
    assert ir["contacted"]["ips"]["ip"] == [{"$": "203.0.113.7", "@malicious": "true"}]
    assert ir["dropped"]["file"][0]["@sha256"] == "ab" * 32


def test_a_clean_sample_has_empty_ioc_sections(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    webid = _finished_webid(emulator, joe, ("ok.txt", b"nothing here"))
    report = json.loads(joe.analysis_download(webid, "iocjson")[1])["analysis"]
    assert report == {"domaininfo": None, "ipinfo": None, "urlinfo": None, "droppedinfo": None}


def test_html_report_and_web_page(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    webid = _finished_webid(emulator, joe, ("page.exe", str(SAMPLES["evil"]["text"]).encode()))
    sink = io.BytesIO()
    assert joe.analysis_download(webid, "html", file=sink) == f"report-{webid}-html.html"
    assert b"malicious" in sink.getvalue()
    assert webid.encode() in sink.getvalue()
    analysisid = joe.analysis_info(webid)["analysisid"]
    for some_id in (webid, analysisid):
        page = requests.get(f"{emulator.url}/analysis/{some_id}", timeout=10)
        assert page.status_code == 200
        assert "text/html" in page.headers["Content-Type"]
        assert b"page.exe" in page.content
    assert requests.get(f"{emulator.url}/analysis/1", timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("report_type", "run", "fragment"),
    [("nonsense", None, "unknown report type"), ("pcap", None, "not emulated"), ("iocjson", 2, "runs 0 to 1")],
)
def test_download_refuses_unknown_types_and_runs(
    emulator: JoeEmulator, report_type: str, run: int | None, fragment: str
) -> None:
    joe = client(emulator)
    webid = _finished_webid(emulator, joe, ("types.exe", str(SAMPLES["evil"]["text"]).encode()))
    with pytest.raises(jbxapi.InvalidParameterError) as caught:
        joe.analysis_download(webid, report_type, run=run)
    assert fragment in caught.value.message


def test_no_report_before_the_analysis_finished(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    submission_id = joe.submit_url("http://slow.example/")["submission_id"]
    webid = joe.submission_info(submission_id)["analyses"][0]["webid"]
    with pytest.raises(jbxapi.InvalidParameterError) as caught:
        joe.analysis_download(webid, "iocjson")
    assert "not finished" in caught.value.message
    with pytest.raises(jbxapi.InvalidParameterError):
        joe.analysis_download("424242", "iocjson")


def test_download_answers_with_an_attachment_header(emulator: JoeEmulator) -> None:
    joe = client(emulator)
    webid = _finished_webid(emulator, joe, ("hdr.exe", b"header check"))
    response = requests.post(
        f"{emulator.url}/api/v2/analysis/download",
        data={"apikey": API_KEY, "webid": webid, "type": "iocjson"},
        timeout=10,
    )
    assert response.headers["Content-Disposition"] == f'attachment; filename="report-{webid}-iocjson.json";'
    assert response.headers["Content-Type"].startswith("application/json")
