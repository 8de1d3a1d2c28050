"""Settings that decide what crosses a network: URLs with real hosts, the webhook's address, TLS
and secret, and a CA bundle that adds to the public roots rather than replacing them."""

from __future__ import annotations

import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import certifi
import httpx
import pytest

from joedefender.adapters._trust import requests_verify, ssl_context
from joedefender.settings import Settings
from tests.hosts import environment, joedefender
from tests.hosts.test_webhook_limits import make_ca_and_server
from tests.test_settings import REQUIRED, only_problem, problems_for, settings_with

_LONG_SECRET = "a-shared-secret-of-24-chars-or-more"
_ANY = "0.0.0.0"  # noqa: S104 - the address these settings are about


@pytest.mark.parametrize(
    "text",
    [
        "not a url",
        "https://exa mple.com",
        "https://-leading-hyphen.example",
        "https://under_score.example",
        "https://api.security.microsoft.com:0",
        "https://api.security.microsoft.com:99999",
        "https://.",
        "https://a..b",
    ],
)
def test_a_url_without_a_valid_host_or_port_is_refused(text: str) -> None:
    problem = only_problem(DefenderApiBaseURL=text)
    assert "URL" in problem or "port" in problem


@pytest.mark.parametrize(
    "text", ["https://eu.api.security.microsoft.com", "http://127.0.0.1:8443", "https://[::1]:9000", "http://localhost"]
)
def test_urls_with_valid_hosts_are_taken(text: str) -> None:
    assert settings_with(DefenderApiBaseURL=text).defender_api_base_url == text


def test_the_webhook_binds_loopback_by_default() -> None:
    settings = settings_with()
    assert settings.webhook_bind_address == "127.0.0.1"
    assert not settings.webhook_tls
    assert settings.warnings() == []


def test_a_non_loopback_address_without_tls_is_refused() -> None:
    problems = dict(problems_for(WebhookBindAddress=_ANY, WebhookSecret=_LONG_SECRET))
    assert "WebhookTlsCertFile" in problems["WebhookBindAddress"]
    assert "WebhookAllowPlainHttp" in problems["WebhookBindAddress"]


def test_plain_http_behind_a_proxy_is_allowed_with_a_warning() -> None:
    settings = settings_with(WebhookBindAddress=_ANY, WebhookSecret=_LONG_SECRET, WebhookAllowPlainHttp="true")
    assert settings.webhook_allow_plain_http
    (warning,) = settings.warnings()
    assert "TLS-terminating proxy" in warning


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (None, "missing"),
        ("x", "too short"),
        ("thirty-one-characters-long-text", "too short"),
        ("a" * 24, "too short"),  # what a length-only rule of 24 took
        ("a" * 64, "too little variety"),
        ("ab" * 20, "too little variety"),
        ("password" * 5, "too little variety"),
    ],
)
def test_a_weak_or_missing_secret_is_refused_off_loopback(tmp_path: Path, secret: str | None, reason: str) -> None:
    _, cert, key = make_ca_and_server(tmp_path)
    values = {"WebhookBindAddress": "::", "WebhookTlsCertFile": str(cert), "WebhookTlsKeyFile": str(key)}
    if secret is not None:
        values["WebhookSecret"] = secret
    problems = dict(problems_for(**values))
    assert list(problems) == ["WebhookSecret"]
    assert problems["WebhookSecret"].startswith(reason)
    assert "at least 32 characters" in problems["WebhookSecret"]
    assert "joedefender secret" in problems["WebhookSecret"]
    if secret is not None:
        assert secret not in problems["WebhookSecret"]


def test_a_short_secret_is_fine_on_loopback() -> None:
    assert settings_with(WebhookSecret="x").webhook_secret is not None


def test_tls_files_are_checked_and_go_together(tmp_path: Path) -> None:
    _, cert, key = make_ca_and_server(tmp_path)
    settings = settings_with(
        WebhookBindAddress=_ANY,
        WebhookSecret=_LONG_SECRET,
        WebhookTlsCertFile=str(cert),
        WebhookTlsKeyFile=str(key),
    )
    assert (settings.webhook_tls_cert_file, settings.webhook_tls_key_file) == (cert, key)
    assert settings.warnings() == []
    assert "WebhookTlsKeyFile" in dict(problems_for(WebhookTlsCertFile=str(cert)))
    assert "holds no PEM private key" in only_problem(WebhookTlsKeyFile=str(cert))
    assert "holds no PEM certificate" in only_problem(WebhookTlsCertFile=str(key))
    assert "not an IP address" in only_problem(WebhookBindAddress="example.com")


def test_plain_http_to_a_remote_joe_is_a_warning_and_to_this_machine_is_not() -> None:
    (warning,) = settings_with(JoeSandboxBaseURL="http://joe.internal.example/joesandbox/index.php").warnings()
    assert "JoeSandboxBaseURL" in warning
    assert "unencrypted" in warning
    assert settings_with(JoeSandboxBaseURL="http://127.0.0.1:8080").warnings() == []
    assert REQUIRED["JoeSandboxAPIKey"] not in warning


# -- the CA bundle adds to the roots ------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An https server on 127.0.0.1 whose certificate a throwaway CA signed: (url, ca file)."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    ca, cert, key = make_ca_and_server(tmp_path / "server")

    class _Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), _Ok)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca
    finally:
        server.shutdown()
        server.server_close()


def test_the_ca_bundle_adds_to_the_system_roots_for_httpx(
    tls_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "system" store is pointed at the server's CA (OpenSSL reads SSL_CERT_FILE); the bundle
    holds an unrelated CA. Replacing the roots with the bundle would refuse the server."""
    url, server_ca = tls_server
    other_ca, _, _ = make_ca_and_server(tmp_path / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(server_ca))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with httpx.Client(verify=ssl_context(other_ca), timeout=5) as client:
        assert client.get(url).status_code == 200
    with httpx.Client(verify=ssl_context(server_ca), timeout=5) as client:  # and the bundle's CA is trusted
        assert client.get(url).status_code == 200


def test_the_ca_bundle_adds_to_certifis_roots_for_requests(tls_server: tuple[str, Path]) -> None:
    import requests

    url, server_ca = tls_server
    verify = requests_verify(server_ca)
    assert isinstance(verify, str)
    combined = Path(verify).read_text()
    assert Path(certifi.where()).read_text().strip() in combined  # the public roots are all there
    assert server_ca.read_text().strip() in combined
    assert requests.get(url, verify=verify, timeout=5).status_code == 200
    assert requests_verify(None) is True


def test_the_connector_clients_use_the_combined_trust(tmp_path: Path) -> None:
    from joedefender.bootstrap import sandbox_client

    ca, _, _ = make_ca_and_server(tmp_path)
    settings = Settings.from_mapping({**REQUIRED, "TlsCaBundle": str(ca)})
    with sandbox_client(settings) as joe:
        verify = joe._verify_ssl
    assert isinstance(verify, str)
    assert Path(certifi.where()).read_text().strip() in Path(verify).read_text()


# --- Microsoft Graph ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "url", "scope"),
    [
        (None, "https://graph.microsoft.com", "https://graph.microsoft.com/.default"),
        ("https://graph.microsoft.com/v1.0/", "https://graph.microsoft.com", "https://graph.microsoft.com/.default"),
        ("graph.microsoft.us", "https://graph.microsoft.us", "https://graph.microsoft.us/.default"),
        ("https://DOD-graph.microsoft.us", "https://dod-graph.microsoft.us", "https://dod-graph.microsoft.us/.default"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443", "https://graph.microsoft.com/.default"),
    ],
)
def test_graph_base_url_and_the_token_audience_it_implies(given: str | None, url: str, scope: str) -> None:
    settings = settings_with(**({"GraphApiBaseURL": given} if given is not None else {}))
    assert settings.graph_api_base_url == url
    assert settings.graph_scope == scope


def test_graph_operated_by_21vianet_is_refused_with_the_reason() -> None:
    problem = only_problem(GraphApiBaseURL="https://microsoftgraph.chinacloudapi.cn")
    assert "21Vianet" in problem
    assert "alerts_v2" in problem


@pytest.mark.parametrize(
    "text", ["https://graph.contoso.com", "https://graph.microsoft.com.evil.example", "http://graph.microsoft.com"]
)
def test_a_graph_url_elsewhere_is_refused_since_the_token_would_go_there(text: str) -> None:
    problem = only_problem(GraphApiBaseURL=text)
    assert "graph.microsoft.com" in problem or "https" in problem


def test_a_graph_url_with_a_path_is_refused() -> None:
    assert "bare host" in only_problem(GraphApiBaseURL="https://graph.microsoft.com/beta/security")


def test_joedefender_secret_prints_a_fresh_secret_the_settings_take_off_loopback(tmp_path: Path) -> None:
    printed = [
        subprocess.run(
            joedefender("secret"), env=environment({}), capture_output=True, text=True, check=True, timeout=60
        )
        for _ in range(2)
    ]
    first, second = (done.stdout for done in printed)
    assert first != second
    assert first.endswith("\n")
    assert len(first.strip()) == 43
    _, cert, key = make_ca_and_server(tmp_path)
    settings = settings_with(
        WebhookBindAddress=_ANY, WebhookSecret=first.strip(), WebhookTlsCertFile=str(cert), WebhookTlsKeyFile=str(key)
    )
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get_secret_value() == first.strip()
