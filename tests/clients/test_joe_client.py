"""The Joe Sandbox client over real sockets: the Joe emulator underneath, unmodified jbxapi in between."""

from __future__ import annotations

import hashlib
import io
import logging
import random
import threading
import time
import traceback
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import jbxapi
import pytest

import joedefender
from joedefender.adapters.joe import (
    JoeAuthError,
    JoeQuotaError,
    JoeRequestError,
    JoeSandboxClient,
    JoeSandboxError,
    JoeUnavailableError,
)
from joedefender.domain.verdicts import Ioc
from joedefender_emulators.runner import Emulators

from .joe_fixtures import API_KEY, WRONG_KEY, add_fault, calls, client_for, inspect, joe_world

TARGET = hashlib.sha256(b"the sample everyone asks about").hexdigest()
OTHER = hashlib.sha256(b"a different sample").hexdigest()
ONLY_ENCRYPTED = hashlib.sha256(b"only encrypted analyses").hexdigest()
ONLY_UNKNOWN = hashlib.sha256(b"only unknown analyses").hexdigest()
DROPPED = hashlib.sha256(b"dropped payload").hexdigest()
PHISH_URL = "http://phish.example/login"

QUEUE_SECONDS = 60.0
ANALYSIS_SECONDS = 300.0

WORLD: dict[str, Any] = {
    "queue_seconds": QUEUE_SECONDS,
    "analysis_seconds": ANALYSIS_SECONDS,
    "analyses": [
        # Several analyses of TARGET; "Winner" is the most relevant (malicious, top score, newest).
        {"sha256": TARGET, "detection": "clean", "score": 99, "threatname": "CleanButHighScore", "age_days": 1},
        {"sha256": TARGET, "detection": "suspicious", "score": 90, "threatname": "Suspicious", "age_days": 1},
        {"sha256": TARGET, "detection": "malicious", "score": 70, "threatname": "OlderTwin", "age_days": 30},
        {"sha256": TARGET, "detection": "malicious", "score": 70, "threatname": "Winner, Unknown", "age_days": 2},
        {"sha256": TARGET, "detection": "malicious", "score": 60, "threatname": "LowerScore", "age_days": 1},
        # Would win, but must be ignored: encrypted, no verdict, or not this file at all.
        {"sha256": TARGET, "detection": "malicious", "score": 100, "threatname": "Encrypted", "encrypted": True},
        {"sha256": TARGET, "detection": "unknown", "score": 100, "threatname": "NoVerdict"},
        {
            "sha256": OTHER,
            "detection": "malicious",
            "score": 100,
            "threatname": "Inexact",
            "filename": f"renamed_{TARGET}.exe",
        },
        {"sha256": ONLY_ENCRYPTED, "detection": "malicious", "score": 80, "encrypted": True},
        {"sha256": ONLY_UNKNOWN, "detection": "unknown", "score": 0},
        # URL analyses: the exact URL, and a longer one that merely contains it.
        {"url": PHISH_URL, "detection": "suspicious", "score": 55, "threatname": "Phishing"},
        {"url": PHISH_URL + "/deeper", "detection": "malicious", "score": 100, "threatname": "Deeper"},
    ],
    "verdicts": [
        {
            "sha256": hashlib.sha256(b"small sample with iocs").hexdigest(),
            "detection": "malicious",
            "score": 87,
            "threatname": "AgentTesla",
            "classification": "spyware",
            "systems": ["w11x64_22h2"],
            "iocs": {
                "domains": [{"value": "c2.evil.example", "malicious": True}, {"value": "www.msftconnecttest.com"}],
                "ips": [{"value": "203.0.113.66", "malicious": True}],
                "urls": [{"value": "http://c2.evil.example/gate.php", "malicious": True}],
                "dropped": [{"sha256": DROPPED, "name": "payload.exe", "malicious": True}],
            },
        },
        {"url": "https://submit.example/landing", "detection": "malicious", "score": 77, "threatname": "Phish"},
    ],
}


@pytest.fixture(scope="module")
def world() -> Iterator[Emulators]:
    with joe_world(WORLD) as emulators:
        yield emulators


@pytest.fixture
def client(world: Emulators) -> Iterator[JoeSandboxClient]:
    with client_for(
        world, JoeSandboxSystems="w10x64_22h2", JoeSandboxAnalysisParameters='{"internet-access": false}'
    ) as c:
        yield c


@pytest.fixture(autouse=True)
def _no_leftover_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "world" in request.fixturenames:
        emulators: Emulators = request.getfixturevalue("world")
        urllib.request.urlopen(
            urllib.request.Request(f"{emulators.joe.url}/_emulator/faults", method="DELETE"), timeout=10
        ).close()


def _finish(emulators: Emulators, client: JoeSandboxClient, submission_id: str) -> str:
    emulators.clock.advance(QUEUE_SECONDS + ANALYSIS_SECONDS)
    status = client.submission_info(submission_id)
    assert status.finished
    assert status.webid is not None
    return status.webid


# --- server and account -------------------------------------------------------------------------


def test_online_and_account(client: JoeSandboxClient) -> None:
    assert client.is_online() is True
    account = client.account()
    assert account.type == "ultimate"
    assert account.daily_limit == 100
    assert account.daily_remaining is not None
    assert 0 < account.daily_remaining <= 100


# --- lookups ------------------------------------------------------------------------------------


def test_lookup_picks_the_most_relevant_exact_match(world: Emulators, client: JoeSandboxClient) -> None:
    verdict = client.lookup(TARGET.upper())
    assert verdict is not None
    assert verdict.threat_names == ("Winner",)
    assert (verdict.detection, verdict.score, verdict.sha256) == ("malicious", 70, TARGET)
    known = {a["webid"]: a for a in inspect(world, "analyses")}
    assert known[verdict.webid]["threatname"] == "Winner, Unknown"
    assert verdict.link == f"{world.joe.url}/analysis/{verdict.webid}/0/html"


def test_lookup_all_orders_by_relevance_and_drops_encrypted_unknown_and_inexact(client: JoeSandboxClient) -> None:
    names = [v.threat_names for v in client.lookup_all(TARGET)]
    assert names == [("Winner",), ("OlderTwin",), ("LowerScore",), ("Suspicious",), ("CleanButHighScore",)]


@pytest.mark.parametrize("sha256", [ONLY_ENCRYPTED, ONLY_UNKNOWN, hashlib.sha256(b"never seen").hexdigest()])
def test_lookup_without_a_usable_analysis_is_none(client: JoeSandboxClient, sha256: str) -> None:
    assert client.lookup(sha256) is None


def test_the_decoys_are_really_served_by_the_search(world: Emulators) -> None:
    """Guards the tests above: the search does return the decoys; it is the client that drops them."""
    searched = jbxapi.JoeSandbox(apikey=API_KEY, apiurl=world.joe.url + "/api").analysis_search(TARGET)
    assert "Inexact" in {item["threatname"] for item in searched}
    assert "Encrypted" in {item["threatname"] for item in searched}


def test_lookup_url_is_exact(client: JoeSandboxClient) -> None:
    verdict = client.lookup_url(PHISH_URL)
    assert verdict is not None
    assert (verdict.detection, verdict.threat_names, verdict.url, verdict.sha256) == (
        "suspicious",
        ("Phishing",),
        PHISH_URL,
        None,
    )
    assert client.lookup_url("http://phish.example/") is None


# --- submissions --------------------------------------------------------------------------------


def test_file_is_streamed_in_chunks_with_a_safe_name(world: Emulators, client: JoeSandboxClient) -> None:
    content = random.Random(7).randbytes(10 * 1024 * 1024 + 12345)
    stream = io.BytesIO(content)
    before = calls(world, "submission/chunked-sample")
    submission_id = client.submit_file(
        stream,
        "C:\\Users\\bob\\Downloads\\Invoice 2024 (copy).pdf.exe",
        tags=["alert:da1234", "machine:abc"],
        comments="from a test",
    )
    assert calls(world, "submission/chunked-sample") - before == 2
    sent = next(s for s in inspect(world, "submissions") if s["id"] == submission_id)
    assert sent["chunked"] is True
    assert sent["sha256"] == hashlib.sha256(content).hexdigest()
    assert sent["size"] == len(content)
    assert sent["filename"] == "Invoice_2024_copy.pdf.exe"
    assert sent["tags"] == ["alert:da1234", "machine:abc"]
    assert sent["systems"] == ["w10x64_22h2"]
    assert sent["comments"] == "from a test"
    assert sent["params"]["internet-access"] == "0"
    assert "apikey" not in sent["params"]


def test_a_sample_of_one_chunk_or_less_goes_in_a_single_request(world: Emulators, client: JoeSandboxClient) -> None:
    """A crash between jbxapi's 'new' and 'chunk' requests would leave a submission a retry cannot find."""
    content = b"small sample"
    before = calls(world, "submission/chunked-sample")
    submission_id = client.submit_file(io.BytesIO(content), "small.exe")
    assert calls(world, "submission/chunked-sample") == before
    sent = next(s for s in inspect(world, "submissions") if s["id"] == submission_id)
    assert sent["chunked"] is False
    assert sent["sha256"] == hashlib.sha256(content).hexdigest()


def test_url_submission_polls_through_to_a_verdict(world: Emulators, client: JoeSandboxClient) -> None:
    submission_id = client.submit_url("https://submit.example/landing", tags=["MSDefender-URL-Alert"])
    status = client.submission_info(submission_id)
    assert (status.status, status.webid, status.finished) == ("submitted", None, False)
    world.clock.advance(QUEUE_SECONDS)
    status = client.submission_info(submission_id)
    assert (status.status, status.webid) == ("running", None)
    world.clock.advance(ANALYSIS_SECONDS)
    status = client.submission_info(submission_id)
    assert status.finished
    assert status.webid is not None
    assert [a.webid for a in status.analyses] == [status.webid]

    verdict = client.verdict(status.webid)
    assert (verdict.detection, verdict.score, verdict.threat_names) == ("malicious", 77, ("Phish",))
    assert verdict.url == "https://submit.example/landing"
    assert verdict.systems == ("w10x64_22h2",)
    assert verdict.link == f"{world.joe.url}/analysis/{status.webid}/0/html"
    with urllib.request.urlopen(verdict.link, timeout=10) as page:
        assert status.webid in page.read().decode()


def test_iocs_from_the_report(world: Emulators, client: JoeSandboxClient) -> None:
    submission_id = client.submit_file(io.BytesIO(b"small sample with iocs"), "agent.exe")
    webid = _finish(world, client, submission_id)
    assert client.verdict(webid).classification == "spyware"
    before = calls(world, "analysis/download")
    iocs = client.iocs(webid)
    assert calls(world, "analysis/download") - before == 1
    assert iocs.domains == (Ioc(value="c2.evil.example", malicious=True), Ioc(value="www.msftconnecttest.com"))
    assert iocs.ips == (Ioc(value="203.0.113.66", malicious=True),)
    assert iocs.urls == (Ioc(value="http://c2.evil.example/gate.php", malicious=True),)
    assert iocs.file_hashes == (Ioc(value=DROPPED, malicious=True),)


def test_iocs_fall_back_to_the_full_report(world: Emulators, client: JoeSandboxClient) -> None:
    submission_id = client.submit_file(io.BytesIO(b"small sample with iocs"), "agent.exe")
    webid = _finish(world, client, submission_id)
    expected = client.iocs(webid)
    add_fault(world, path="analysis/download", status=400, code=3, message="Unknown type iocjson.", times=1)
    before = calls(world, "analysis/download")
    assert client.iocs(webid) == expected
    assert calls(world, "analysis/download") - before == 2


def test_a_submission_is_found_again_by_its_marker(world: Emulators, client: JoeSandboxClient) -> None:
    marker = "joedefender-7f3a9c"
    submission_id = client.submit_url("http://marker.example/", comments=marker)
    client.submit_url("http://longer-marker.example/", comments=marker + "d")
    webid = client.find_analysis(marker)
    assert webid is not None
    assert client.analysis_status(webid) == "submitted"
    world.clock.advance(QUEUE_SECONDS + ANALYSIS_SECONDS)
    assert client.analysis_status(webid) == "finished"
    assert client.submission_info(submission_id).webid == webid
    assert client.find_analysis("joedefender-000000") is None


def test_delete_submission(client: JoeSandboxClient) -> None:
    submission_id = client.submit_url("http://delete.example/")
    client.delete_submission(submission_id)
    with pytest.raises(JoeRequestError, match="submission"):
        client.submission_info(submission_id)


def test_one_client_serves_many_threads(client: JoeSandboxClient) -> None:
    results: list[str] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                verdict = client.lookup(TARGET)
                assert verdict is not None
                results.append(verdict.webid)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert len(results) == 40
    assert len(set(results)) == 1
    assert len(client._instances) == 8


# --- permanent errors ---------------------------------------------------------------------------


def test_bad_key_is_permanent_and_not_retried(world: Emulators) -> None:
    before = calls(world, "server/online")
    with client_for(world, max_retry=5, JoeSandboxAPIKey=WRONG_KEY) as client:
        with pytest.raises(JoeAuthError, match="permanent") as caught:
            client.is_online()
        assert calls(world, "server/online") - before == 1
        assert WRONG_KEY not in str(caught.value) + repr(caught.value) + repr(client)


def test_quota_is_permanent_and_not_retried() -> None:
    with joe_world({"quota_daily": 1}) as emulators, client_for(emulators, max_retry=5) as client:
        client.submit_url("http://first.example/")
        with pytest.raises(JoeQuotaError, match="permanent"):
            client.submit_url("http://second.example/")
        assert calls(emulators, "submission/new") == 2
        account = client.account()
        assert account.daily_remaining == 0


def test_unknown_webid_is_a_request_error(client: JoeSandboxClient) -> None:
    with pytest.raises(JoeRequestError, match="webid"):
        client.verdict("999999999")


# --- transient errors and retries ---------------------------------------------------------------


@pytest.mark.parametrize(("status", "code"), [(503, 5), (500, 6)])
def test_offline_and_5xx_are_retried_then_succeed(
    world: Emulators, client: JoeSandboxClient, status: int, code: int
) -> None:
    add_fault(world, path="analysis/search", status=status, code=code, times=2)
    before = calls(world, "analysis/search")
    assert client.lookup(TARGET) is not None
    assert calls(world, "analysis/search") - before == 3


def test_retries_exhausted_is_unavailable(world: Emulators) -> None:
    add_fault(world, path="analysis/info", status=500, code=6)
    before = calls(world, "analysis/info")
    with client_for(world, max_retry=2) as client, pytest.raises(JoeUnavailableError) as caught:
        client.verdict("1000001")
    assert calls(world, "analysis/info") - before == 3
    assert caught.value.attempts == 3
    assert caught.value.retryable


def test_the_time_budget_bounds_the_retries(world: Emulators) -> None:
    add_fault(world, path="analysis/info", status=503, code=5)
    before = calls(world, "analysis/info")
    started = time.monotonic()
    with client_for(world, max_retry=20, budget=timedelta(seconds=0.3)) as client, pytest.raises(JoeUnavailableError):
        client.verdict("1000001")
    attempts = calls(world, "analysis/info") - before
    assert 2 <= attempts < 21
    assert time.monotonic() - started < 5


def test_maintenance_mode() -> None:
    with joe_world({"online": False}) as emulators, client_for(emulators, max_retry=1) as client:
        assert client.is_online() is False
        with pytest.raises(JoeUnavailableError, match="maintenance"):
            client.submit_url("http://paused.example/")
        # A submission is never sent twice by the client: its answer may be lost after Joe took it
        # (the step retries it later, after looking for its marker).
        assert calls(emulators, "submission/new") == 1


def test_a_dropped_connection_is_retried(world: Emulators, client: JoeSandboxClient) -> None:
    add_fault(world, path="server/online", drop=True, times=1)
    before = inspect(world, "calls").get("server/online", {"calls": 0, "dropped": 0})
    assert client.is_online() is True
    after = inspect(world, "calls")["server/online"]
    assert after["dropped"] - before["dropped"] == 1
    assert after["calls"] - before["calls"] == 2


def test_connections_dropped_for_good_are_unavailable(world: Emulators) -> None:
    add_fault(world, path="submission/info", drop=True)
    with client_for(world, max_retry=1) as client, pytest.raises(JoeUnavailableError, match="cannot reach"):
        client.submission_info("3000001")


def test_a_response_slower_than_the_timeout_is_retried(world: Emulators) -> None:
    add_fault(world, path="analysis/search", delay=2.0, times=1)
    started = time.monotonic()
    with client_for(world, timeout=0.3) as client:
        assert client.lookup(TARGET) is not None
    assert time.monotonic() - started < 2.0  # the slow answer was given up on, not waited for


# --- secrets ------------------------------------------------------------------------------------


def test_the_key_never_appears_in_errors_reprs_logs_or_tracebacks(
    world: Emulators, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    add_fault(world, path="analysis/info", status=503, code=5, message=f"offline, key {API_KEY}", times=1)
    errors: list[JoeSandboxError] = []
    with client_for(world, max_retry=0) as client:
        for action in (
            lambda: client.verdict("1000001"),  # a server message echoing the key
            lambda: client.verdict("999999999"),  # unknown webid
            lambda: client.submit_url("http://x.example/", params={"no-such-parameter": 1}),
        ):
            with pytest.raises(JoeSandboxError) as caught:
                action()
            errors.append(caught.value)
        texts = [repr(client), *(str(e) for e in errors), *(repr(e) for e in errors)]
        texts += ["".join(traceback.format_exception(e)) for e in errors]
    texts += [record.getMessage() for record in caplog.records]
    assert all(API_KEY not in text for text in texts)
    assert "***" in str(errors[0])


def test_user_agent_names_joedefender(client: JoeSandboxClient) -> None:
    session = client._joe().session
    assert session.headers["User-Agent"].startswith(f"joedefender/{joedefender.__version__} (jbxapi.py ")
