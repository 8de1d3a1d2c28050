"""The SandboxPort over the real Joe client and the Joe emulator, over real sockets: the core's
verdicts and submission status, and each Joe failure as the core's error."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import timedelta

import pytest

from joedefender.adapters.joe import JoeSandboxAdapter, JoeSandboxError
from joedefender.domain.errors import Misconfigured, PortError, QuotaExhausted, Rejected, Transient
from joedefender.domain.verdicts import Ioc, SubmissionStatus, Verdict
from joedefender.pipeline.ports import SandboxPort
from joedefender_emulators.runner import Emulators

from .joe_fixtures import API_KEY, WRONG_KEY, add_fault, calls, client_for, joe_world

KNOWN = hashlib.sha256(b"a sample Joe has seen").hexdigest()
WITH_IOCS = b"a sample with indicators"
PHISH_URL = "http://phish.example/login"
QUEUE_SECONDS = 60.0
ANALYSIS_SECONDS = 300.0

WORLD = {
    "queue_seconds": QUEUE_SECONDS,
    "analysis_seconds": ANALYSIS_SECONDS,
    "analyses": [
        {"sha256": KNOWN, "detection": "malicious", "score": 90, "threatname": "Emotet", "age_days": 3},
        {"url": "HTTP://Phish.Example/login#top", "detection": "suspicious", "score": 55, "threatname": "Phishing"},
    ],
    "verdicts": [
        {
            "sha256": hashlib.sha256(WITH_IOCS).hexdigest(),
            "detection": "malicious",
            "score": 87,
            "threatname": "AgentTesla",
            "iocs": {"domains": [{"value": "c2.evil.example", "malicious": True}]},
        },
    ],
}


@pytest.fixture(scope="module")
def world() -> Iterator[Emulators]:
    with joe_world(WORLD) as emulators:
        yield emulators


@pytest.fixture
def adapter(world: Emulators) -> Iterator[JoeSandboxAdapter]:
    with closing(JoeSandboxAdapter(client_for(world))) as adapter:
        yield adapter


def _port(adapter: JoeSandboxAdapter) -> SandboxPort:
    return adapter  # mypy: the adapter is the port


# --- models -----------------------------------------------------------------------------------------


def test_lookups_give_the_cores_verdicts(adapter: JoeSandboxAdapter) -> None:
    (verdict,) = _port(adapter).lookup(KNOWN)
    assert isinstance(verdict, Verdict)
    assert (verdict.detection, verdict.score, verdict.threat_names, verdict.sha256) == (
        "malicious",
        90,
        ("Emotet",),
        KNOWN,
    )
    assert adapter.lookup(hashlib.sha256(b"never seen").hexdigest()) == ()


def test_url_lookups_match_by_the_cores_url_identity(adapter: JoeSandboxAdapter) -> None:
    """Scheme and host case and the fragment do not make another URL (domain.samples.normalise_url)."""
    (verdict,) = adapter.lookup_url(PHISH_URL)
    assert isinstance(verdict, Verdict)
    assert (verdict.detection, verdict.threat_names, verdict.sha256) == ("suspicious", ("Phishing",), None)
    assert adapter.lookup_url("http://phish.example/") == ()


def test_a_file_submission_is_followed_to_its_verdict_and_iocs(world: Emulators, adapter: JoeSandboxAdapter) -> None:
    submission_id = adapter.submit_file(io.BytesIO(WITH_IOCS), "agent.exe", tags=["alert:da1"], comments="file-marker")
    status = adapter.submission_info(submission_id)
    assert type(status) is SubmissionStatus
    assert (status.submission_id, status.status, status.webid, status.finished) == (
        submission_id,
        "submitted",
        None,
        False,
    )
    world.clock.advance(QUEUE_SECONDS + ANALYSIS_SECONDS)
    status = adapter.submission_info(submission_id)
    assert status.finished
    assert status.webid is not None
    verdict = adapter.verdict(status.webid)
    assert isinstance(verdict, Verdict)
    assert (verdict.detection, verdict.score, verdict.webid) == ("malicious", 87, status.webid)
    assert adapter.iocs(status.webid).domains == (Ioc(value="c2.evil.example", malicious=True),)


def test_a_url_submission_is_found_again_by_its_marker(world: Emulators, adapter: JoeSandboxAdapter) -> None:
    marker = "joedefender-port-5e1b"
    submission_id = adapter.submit_url("http://marker.example/", tags=["url"], comments=marker)
    webid = adapter.find_analysis(marker)
    assert webid is not None
    assert adapter.analysis_status(webid) == "submitted"
    world.clock.advance(QUEUE_SECONDS + ANALYSIS_SECONDS)
    assert adapter.analysis_status(webid) == "finished"
    assert adapter.submission_info(submission_id).webid == webid
    assert adapter.find_analysis("joedefender-port-0000") is None


# --- errors -----------------------------------------------------------------------------------------


def _raised(call: Callable[[], object]) -> PortError:
    with pytest.raises(PortError) as caught:
        call()
    error = caught.value
    assert error.service == "joe"
    assert isinstance(error.__cause__, JoeSandboxError)
    assert error.message == error.__cause__.message
    assert API_KEY not in str(error) + repr(error)
    return error


def test_a_bad_key_is_misconfigured(world: Emulators) -> None:
    with closing(JoeSandboxAdapter(client_for(world, JoeSandboxAPIKey=WRONG_KEY))) as adapter:
        error = _raised(lambda: adapter.lookup(KNOWN))
    assert type(error) is Misconfigured
    assert WRONG_KEY not in str(error) + repr(error)


def test_an_exhausted_quota_is_quota_exhausted() -> None:
    with joe_world({"quota_daily": 1}) as emulators, closing(JoeSandboxAdapter(client_for(emulators))) as adapter:
        adapter.submit_url("http://first.example/")
        error = _raised(lambda: adapter.submit_url("http://second.example/"))
        assert type(error) is QuotaExhausted


def test_a_refused_request_is_rejected(adapter: JoeSandboxAdapter) -> None:
    assert type(_raised(lambda: adapter.verdict("999999999"))) is Rejected
    assert type(_raised(lambda: adapter.lookup("not-a-digest"))) is Rejected


def test_an_outage_outlasting_the_retries_is_transient(world: Emulators) -> None:
    add_fault(world, path="analysis/search", status=503, code=5, times=3)
    with closing(JoeSandboxAdapter(client_for(world, max_retry=1, budget=timedelta(seconds=5)))) as adapter:
        error = _raised(lambda: adapter.lookup(KNOWN))
    assert type(error) is Transient
    assert not error.maybe_applied


def test_a_submission_lost_in_an_outage_may_have_been_applied(world: Emulators) -> None:
    add_fault(world, path="submission/new", status=500, code=6, times=1)
    before = calls(world, "submission/new")
    with closing(JoeSandboxAdapter(client_for(world, max_retry=0))) as adapter:
        error = _raised(lambda: adapter.submit_url("http://lost.example/", comments="lost-marker"))
    assert type(error) is Transient
    assert error.maybe_applied  # look for the marker before submitting again
    assert calls(world, "submission/new") - before == 1
