"""The Joe client's pure parts: report parsing, relevance, file names, error mapping, the retry loop."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import jbxapi
import pytest
import requests
from pydantic import SecretStr

from joedefender.adapters.joe import (
    JoeAuthError,
    JoeQuotaError,
    JoeRequestError,
    JoeSandboxClient,
    JoeSandboxError,
    JoeUnavailableError,
    safe_sample_name,
)
from joedefender.adapters.joe.analyses import (
    analysis_link,
    exact_sha256_matches,
    exact_url_matches,
    is_usable,
    most_relevant,
    to_verdict,
    web_base,
)
from joedefender.adapters.joe.iocs import parse_ioc_report
from joedefender.adapters.joe.retry import call_with_retries
from joedefender.adapters.joe.translate import translate
from joedefender.domain.errors import JoeDefenderError
from joedefender.domain.retry import RetryPolicy
from joedefender.domain.verdicts import Ioc

API_KEY = "jbx-Un1t-Key-93c0d7a1f2b46e58"  # distinctive, so finding it in a message cannot be luck
SHA_A = "a" * 64
SHA_B = "b" * 64

# --- IOC reports -------------------------------------------------------------------------------


def test_iocjson_lists_are_read_with_joes_malicious_flags() -> None:
    report = {
        "analysis": {
            "domaininfo": {
                "domain": [
                    {"@name": "Evil.Example", "@malicious": "true", "@ip": "203.0.113.7"},
                    {"@name": "cdn.example.org", "@malicious": "false"},
                ]
            },
            "ipinfo": {"ip": [{"@ip": "203.0.113.7", "@malicious": "true"}]},
            "urlinfo": {"url": [{"@name": "http://evil.example/Payload.bin", "@malicious": "true"}]},
            "droppedinfo": {
                "hash": [
                    {
                        "@file": "C:\\Users\\x\\AppData\\drop.exe",
                        "@malicious": "true",
                        "value": [
                            {"@algo": "MD5", "$": "0" * 32},
                            {"@algo": "SHA-256", "$": SHA_A.upper()},
                        ],
                    }
                ]
            },
        }
    }
    iocs = parse_ioc_report(report)
    assert iocs.domains == (Ioc(value="evil.example", malicious=True), Ioc(value="cdn.example.org"))
    assert iocs.ips == (Ioc(value="203.0.113.7", malicious=True),)
    assert iocs.urls == (Ioc(value="http://evil.example/Payload.bin", malicious=True),)
    assert iocs.file_hashes == (Ioc(value=SHA_A, malicious=True),)


def test_null_sections_and_single_objects_instead_of_lists() -> None:
    report = {
        "analysis": {
            "domaininfo": None,
            "ipinfo": {"ip": {"@ip": "198.51.100.1", "@malicious": "false"}},
            "urlinfo": {"url": None},
            "droppedinfo": {"hash": {"@malicious": "false", "value": {"@algo": "SHA-256", "$": SHA_B}}},
        }
    }
    iocs = parse_ioc_report(report)
    assert iocs.domains == ()
    assert iocs.urls == ()
    assert iocs.ips == (Ioc(value="198.51.100.1", malicious=False),)
    assert iocs.file_hashes == (Ioc(value=SHA_B, malicious=False),)


def test_duplicates_merge_and_any_malicious_sighting_wins() -> None:
    report = {
        "analysis": {
            "domaininfo": {
                "domain": [
                    {"@name": "a.example", "@malicious": "false"},
                    {"@name": "A.EXAMPLE", "@malicious": "true"},
                    {"@name": "a.example", "@malicious": "false"},
                ]
            },
            "droppedinfo": {
                "hash": [
                    {"@malicious": "false", "value": [{"@algo": "SHA-256", "$": SHA_A}]},
                    {"@malicious": "true", "value": [{"@algo": "SHA-256", "$": SHA_A}]},
                ]
            },
        }
    }
    iocs = parse_ioc_report(report)
    assert iocs.domains == (Ioc(value="a.example", malicious=True),)
    assert iocs.file_hashes == (Ioc(value=SHA_A, malicious=True),)


def test_unresolved_and_malformed_entries_are_skipped() -> None:
    report = {
        "analysis": {
            "domaininfo": {"domain": [{"@name": "unknown"}, {"@name": ""}, "junk", {"@ip": "1.2.3.4"}]},
            "ipinfo": {"ip": [{"@ip": "unknown"}, 7]},
            "droppedinfo": {
                "hash": [
                    {"value": [{"@algo": "SHA-256", "$": "not-a-digest"}]},
                    {"value": [{"@algo": "SHA", "$": "1" * 40}]},
                    {"value": None},
                ]
            },
        }
    }
    assert parse_ioc_report(report).empty
    assert parse_ioc_report([1, 2]).empty
    assert parse_ioc_report({"analysis": "nope"}).empty


# --- analyses, relevance and verdicts ---------------------------------------------------------


def _analysis(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "webid": "100",
        "analysisid": "7",
        "status": "finished",
        "detection": "malicious",
        "score": 50,
        "sha256": SHA_A,
        "filename": "x.exe",
        "time": "2024-05-01T10:00:00+00:00",
        "threatname": "Unknown",
        "classification": "ransomware",
        "encrypted": False,
        "runs": [{"system": "w10x64_22h2"}, {"system": "w11x64_22h2"}, {"system": "w10x64_22h2"}],
    }
    return {**base, **fields}


@pytest.mark.parametrize(
    ("api_url", "web"),
    [
        ("https://jbxcloud.joesecurity.org/api", "https://jbxcloud.joesecurity.org"),
        ("https://www.joesandbox.com/api/", "https://www.joesandbox.com"),
        ("http://joe.corp.local/joesandbox/index.php/api", "http://joe.corp.local/joesandbox/index.php"),
    ],
)
def test_links_use_the_web_base_of_the_api_url(api_url: str, web: str) -> None:
    assert web_base(api_url) == web
    assert analysis_link(api_url, "4242") == f"{web}/analysis/4242/0/html"


def test_verdict_fields() -> None:
    item = _analysis(threatname="Emotet, Unknown,  TrickBot ,,Emotet", sha256=SHA_A.upper())
    verdict = to_verdict(item, "https://jbxcloud.joesecurity.org/api")
    assert verdict.threat_names == ("Emotet", "TrickBot")
    assert verdict.systems == ("w10x64_22h2", "w11x64_22h2")
    assert verdict.sha256 == SHA_A
    assert verdict.url is None
    assert verdict.time == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert verdict.link == "https://jbxcloud.joesecurity.org/analysis/100/0/html"
    assert (verdict.analysis_id, verdict.classification, verdict.conclusive) == ("7", "ransomware", True)


def test_url_analysis_verdict_carries_the_url() -> None:
    item = _analysis(sha256="", filename="http://evil.example/x", threatname="")
    verdict = to_verdict(item, "https://jbxcloud.joesecurity.org/api")
    assert (verdict.sha256, verdict.url, verdict.threat_names) == (None, "http://evil.example/x", ())


def test_usable_excludes_unknown_encrypted_unfinished() -> None:
    assert is_usable(_analysis())
    assert not is_usable(_analysis(detection="unknown"))
    assert not is_usable(_analysis(detection="weird"))
    assert not is_usable(_analysis(encrypted=True))
    assert not is_usable(_analysis(status="running"))
    assert is_usable({k: v for k, v in _analysis().items() if k != "status"})


def test_exact_matches_only() -> None:
    items = [_analysis(webid="1", sha256=SHA_A.upper()), _analysis(webid="2", sha256=SHA_B, filename=SHA_A)]
    assert [i["webid"] for i in exact_sha256_matches(items, SHA_A)] == ["1"]


@pytest.mark.parametrize(
    ("filename", "matches"),
    [
        ("http://evil.example/x?a=1", True),
        ("HTTP://Evil.Example:80/x?a=1#part", True),  # case, default port and fragment: the same URL
        ("evil.example/x?a=1", True),  # a bare host is http, as the core reads evidence URLs
        ("http://evil.example/X?a=1", False),  # the path and query are the resource's own
        ("http://evil.example/x?a=2", False),
        ("https://evil.example/x?a=1", False),
        ("http://evil.example:8080/x?a=1", False),
    ],
)
def test_url_matches_follow_the_cores_url_identity(filename: str, matches: bool) -> None:
    items = [_analysis(webid="1", sha256="", filename=filename)]
    assert bool(exact_url_matches(items, "http://evil.example/x?a=1")) is matches


def test_urls_the_core_refuses_match_only_their_own_spelling() -> None:
    items = [
        _analysis(webid="1", sha256="", filename="ftp://files.example/a"),
        _analysis(webid="2", sha256="", filename="ftp://files.example/b"),
        _analysis(webid="3", sha256=SHA_A, filename="ftp://files.example/a"),  # a file, not a URL analysis
    ]
    assert [i["webid"] for i in exact_url_matches(items, " ftp://files.example/a ")] == ["1"]


def test_most_relevant_is_severity_then_score_then_newest() -> None:
    older = "2024-01-01T00:00:00+00:00"
    newer = "2024-06-01T00:00:00+02:00"
    items = [
        _analysis(webid="clean-high", detection="clean", score=99),
        _analysis(webid="sus", detection="suspicious", score=60),
        _analysis(webid="mal-old", detection="malicious", score=80, time=older),
        _analysis(webid="mal-new", detection="malicious", score=80, time=newer),
        _analysis(webid="mal-low", detection="malicious", score=70, time=newer),
    ]
    best = most_relevant(items)
    assert best is not None
    assert best["webid"] == "mal-new"
    assert most_relevant([]) is None


# --- file names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("original", "safe"),
    [
        ("invoice.pdf.exe", "invoice.pdf.exe"),
        ("C:\\Users\\bob\\Downloads\\My Report (final).docm", "My_Report_final.docm"),
        ("/tmp/../../etc/passwd", "passwd"),
        ("résumé.DOCX", "resume.DOCX"),
        ("文件.exe", "sample.exe"),
        ("evil;rm -rf ~;$(id)`x`.ps1", "evil_rm-rf_id_x.ps1"),
        (".hidden", "sample.hidden"),
        ("noextension", "noextension"),
        ("", "sample"),
        ("trailing.", "trailing"),
        ("a\x00b\r\n.js", "a_b.js"),
    ],
)
def test_sample_names_are_sanitised_keeping_the_extension(original: str, safe: str) -> None:
    assert safe_sample_name(original) == safe


def test_long_names_are_cut_but_keep_the_extension() -> None:
    name = safe_sample_name("x" * 500 + ".xlsm")
    assert len(name) == 128
    assert name.endswith(".xlsm")
    assert safe_sample_name("a." + "e" * 40) == "a." + "e" * 16


# --- errors -----------------------------------------------------------------------------------


def _api_error(code: int, message: str) -> Exception:
    error: Exception = jbxapi.ApiError({"code": code, "message": message})
    return error


@pytest.mark.parametrize(
    ("exc", "expected", "retryable"),
    [
        (_api_error(4, "Invalid API key."), JoeAuthError, False),
        (_api_error(1, "Quota exceeded."), JoeQuotaError, False),
        (_api_error(5, "Server offline."), JoeUnavailableError, True),
        (_api_error(6, "Internal error."), JoeUnavailableError, True),
        (_api_error(2, "Missing parameter webid."), JoeRequestError, False),
        (_api_error(3, "Unknown parameter foo."), JoeRequestError, False),
        (_api_error(7, "Permission denied."), JoeRequestError, False),
        (_api_error(8, "Unknown endpoint."), JoeRequestError, False),
        (jbxapi.ConnectionError(requests.ConnectionError("reset")), JoeUnavailableError, True),
        (
            jbxapi.JoeException("The server responded with an unexpected format (502). Is..."),
            JoeUnavailableError,
            True,
        ),
        (jbxapi.JoeException("Unexpected data (503). Is the API url correct?"), JoeUnavailableError, True),
        (
            jbxapi.JoeException("The server responded with an unexpected format (404). Is..."),
            JoeRequestError,
            False,
        ),
        (ValueError("Unknown parameter systmes"), JoeRequestError, False),
    ],
)
def test_jbxapi_failures_map_to_our_types(exc: Exception, expected: type, retryable: bool) -> None:
    error = translate(exc, API_KEY, "analysis/info")
    assert type(error) is expected
    assert isinstance(error, JoeDefenderError)
    assert error.retryable is retryable
    assert "analysis/info" in str(error)


def test_permanent_errors_say_so() -> None:
    assert "permanent" in str(translate(_api_error(4, "Invalid API key."), API_KEY, "server/online"))
    assert "permanent" in str(translate(_api_error(1, "Quota exceeded."), API_KEY, "submission/new"))


def test_the_key_is_scrubbed_even_when_a_server_echoes_it() -> None:
    error = translate(_api_error(4, f"API key {API_KEY} is not valid"), API_KEY, "server/online")
    assert API_KEY not in str(error)
    assert API_KEY not in repr(error)
    assert error.code == 4


# --- retry loop --------------------------------------------------------------------------------


class _FakeTime:
    """A clock the sleeps advance, so the loop's waits are observable without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def _failing(times: int, error: JoeSandboxError) -> tuple[list[int], Any]:
    attempts: list[int] = []

    def attempt() -> str:
        attempts.append(1)
        if len(attempts) <= times:
            raise error
        return "ok"

    return attempts, attempt


def test_transient_failures_back_off_exponentially_then_succeed() -> None:
    fake = _FakeTime()
    attempts, attempt = _failing(3, JoeUnavailableError("offline", code=5))
    policy = RetryPolicy(max_retries=5, budget=300.0, first=1.0)
    assert call_with_retries(attempt, policy, operation="x", sleep=fake.sleep, clock=fake.clock) == "ok"
    assert len(attempts) == 4
    for number, wait in enumerate(fake.sleeps, start=1):
        ceiling = 2.0 ** (number - 1)
        assert ceiling / 2 <= wait <= ceiling


def test_retries_stop_at_max_retry() -> None:
    fake = _FakeTime()
    attempts, attempt = _failing(100, JoeUnavailableError("offline", code=5))
    policy = RetryPolicy(max_retries=3, budget=3600.0, first=0.5)
    with pytest.raises(JoeUnavailableError) as caught:
        call_with_retries(attempt, policy, operation="x", sleep=fake.sleep, clock=fake.clock)
    assert len(attempts) == 4
    assert caught.value.attempts == 4
    assert "4 attempts" in str(caught.value)


def test_retries_stop_at_the_time_budget() -> None:
    fake = _FakeTime()
    attempts, attempt = _failing(100, JoeUnavailableError("offline", code=5))
    policy = RetryPolicy(max_retries=20, budget=10.0, first=1.0, cap=60.0)
    with pytest.raises(JoeUnavailableError):
        call_with_retries(attempt, policy, operation="x", sleep=fake.sleep, clock=fake.clock)
    assert sum(fake.sleeps) <= 10.0
    assert 3 <= len(attempts) < 21


def test_permanent_failures_are_not_retried() -> None:
    fake = _FakeTime()
    for error in (JoeAuthError("bad key"), JoeQuotaError("quota"), JoeRequestError("bad")):
        attempts, attempt = _failing(100, error)
        with pytest.raises(type(error)):
            call_with_retries(attempt, RetryPolicy(max_retries=5), operation="x", sleep=fake.sleep, clock=fake.clock)
        assert len(attempts) == 1
    assert fake.sleeps == []


# --- client checks that need no server ---------------------------------------------------------


def _offline_client() -> JoeSandboxClient:
    """A client on a port nobody listens on: if it sent anything, the error would be JoeUnavailableError."""
    return JoeSandboxClient(
        "http://127.0.0.1:9/api",
        SecretStr(API_KEY),
        retry=RetryPolicy(max_retries=0),
        analysis_parameters={"internet-access": False, "tags": ["from-settings"]},
        systems=("w10x64_22h2",),
    )


def test_unknown_parameters_fail_before_anything_is_sent() -> None:
    with _offline_client() as client, pytest.raises(JoeRequestError, match="systmes"):
        client.submit_url("http://example.com/", params={"systmes": ["w7"]})


def test_bad_inputs_fail_before_anything_is_sent() -> None:
    with _offline_client() as client:
        with pytest.raises(JoeRequestError, match="SHA-256"):
            client.lookup("abc")
        with pytest.raises(JoeRequestError, match="empty"):
            client.submit_url("  ")

        class _Pipe(io.RawIOBase):
            def readable(self) -> bool:
                return True

        with pytest.raises(JoeRequestError, match="seekable"):
            client.submit_file(_Pipe(), "x.exe")  # type: ignore[arg-type]


def test_unreachable_server_is_unavailable_and_the_key_stays_out() -> None:
    with _offline_client() as client:
        with pytest.raises(JoeUnavailableError) as caught:
            client.is_online()
        assert API_KEY not in str(caught.value)
        assert API_KEY not in repr(client)
        assert "127.0.0.1:9" in repr(client)
