"""The webhook under an attacker's and a busy day's traffic: descriptors, slow clients, TLS,
foreign hosts, database errors, logs. All over real sockets on 127.0.0.1, bounded in count and time."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from joedefender.adapters.sqlite import SqliteStore
from joedefender.hosts.standalone.webhook import TlsFiles, Webhook, WebhookLimits
from tests.hosts.webhook_rig import SECRET, alert_id, running_webhook

_JSON = {"Content-Type": "application/json"}
_AUTH = {**_JSON, "x-functions-key": SECRET}
_ROOT = Path(__file__).resolve().parents[2]


def _post(webhook: Webhook, body: object, headers: dict[str, str] | None = None, **kwargs: object) -> httpx.Response:
    return httpx.post(
        f"{webhook.url}/api/alerts",
        content=json.dumps(body).encode(),
        headers=headers if headers is not None else _AUTH,
        timeout=10,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def hook(tmp_path: Path) -> Iterator[tuple[Webhook, SqliteStore]]:
    with running_webhook(tmp_path / "state.db") as running:
        yield running


# -- descriptors: connections are the pool's, not the threads' --------------------------------


@pytest.mark.slow
def test_five_thousand_deliveries_with_256_open_files_see_no_503_and_a_flat_descriptor_count(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.hosts.webhook_rig", str(tmp_path / "state.db"), "5000", "256"],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["statuses"] == {"202": 5000}
    assert (result["recorded"], result["queued"]) == (5000, 5000)
    counts = result["descriptors"]  # after each fifth of the deliveries
    assert max(counts) - min(counts) <= 8, counts
    assert max(counts) < 64, counts


# -- slow clients --------------------------------------------------------------------------------


def test_three_hundred_clients_that_send_only_a_request_line_are_cut_off_and_hold_nothing(tmp_path: Path) -> None:
    limits = WebhookLimits(header_timeout=1.0)
    with running_webhook(tmp_path / "state.db", limits=limits) as (webhook, store):
        port = int(webhook.url.rsplit(":", 1)[1])
        slow = []
        for _ in range(300):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            raw.sendall(b"POST /api/alerts HTTP/1.1\r\n")
            slow.append(raw)
        try:
            started = time.monotonic()
            response = _post(webhook, {"id": alert_id(1)})  # a real delivery gets through meanwhile
            assert response.status_code == 202
            assert time.monotonic() - started < 5
            for raw in slow:  # each is closed by the server once the head deadline passes
                assert raw.recv(4096) == b""
            assert time.monotonic() - started < 9  # one deadline (1 s), not one per client
        finally:
            for raw in slow:
                raw.close()
        assert [doc.key for doc in store.list("alert")] == [alert_id(1)]


def test_a_client_trickling_its_headers_is_cut_off_at_the_head_deadline(tmp_path: Path) -> None:
    with running_webhook(tmp_path / "state.db", limits=WebhookLimits(header_timeout=1.0)) as (webhook, _):
        port = int(webhook.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            started = time.monotonic()
            raw.sendall(b"POST /api/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            raw.settimeout(0.1)  # the client's pace: one header line every 0.1 s, for 4 s
            closed = False
            for _ in range(40):
                try:
                    raw.sendall(b"X-Slow: 1\r\n")
                    closed = raw.recv(1) == b""
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
                if closed:
                    break
            assert closed
            assert time.monotonic() - started < 3


def test_a_body_that_does_not_arrive_gets_408(tmp_path: Path) -> None:
    with running_webhook(tmp_path / "state.db", limits=WebhookLimits(body_timeout=1.0)) as (webhook, store):
        port = int(webhook.url.rsplit(":", 1)[1])
        head = (
            f"POST /api/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"x-functions-key: {SECRET}\r\nContent-Length: 100\r\n\r\n{{"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(head.encode())
            answer = raw.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408"), answer
        assert store.list("alert") == []


# -- floods of connections that send nothing ---------------------------------------------------


def _open_idle(port: int, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """`count` connections from `source` that send nothing (the client keeps them open)."""
    idle = []
    for _ in range(count):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.bind((source, 0))
        raw.settimeout(10)
        raw.connect(("127.0.0.1", port))
        idle.append(raw)
    return idle


def _until_gate_saw(webhook: Webhook, count: int) -> None:
    """Wait (bounded) until the server has taken every one of `count` connections through its gate."""
    deadline = time.monotonic() + 30
    while (seen := webhook.connections()).admitted + seen.refused < count:
        assert time.monotonic() < deadline, seen
        time.sleep(0.01)


def _until_gate_holds(webhook: Webhook, count: int) -> None:
    """Wait (bounded) until the server's gate counts `count` open connections."""
    deadline = time.monotonic() + 10
    while (seen := webhook.connections()).open != count:
        assert time.monotonic() < deadline, seen
        time.sleep(0.01)


def _post_from(webhook: Webhook, source: str, n: int, **kwargs: object) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source, **kwargs)  # type: ignore[arg-type]
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.post(f"{webhook.url}/api/alerts", content=json.dumps({"id": alert_id(n)}).encode(), headers=_AUTH)


def test_with_1100_idle_connections_from_one_address_a_delivery_from_another_gets_202_within_a_second(
    tmp_path: Path,
) -> None:
    with running_webhook(tmp_path / "state.db") as (webhook, store):
        port = int(webhook.url.rsplit(":", 1)[1])
        flood = _open_idle(port, 1100)
        try:
            _until_gate_saw(webhook, 1100)
            before = webhook.connections()
            assert before.by_client == {"127.0.0.1": WebhookLimits.per_client_connections}
            started = time.monotonic()
            response = _post_from(webhook, "127.0.0.2", 1)
            elapsed = time.monotonic() - started
            after = webhook.connections()
            assert response.status_code == 202, response.text
            assert elapsed < 1.0
            # The flood is still held while the delivery went through, and nobody had to give way
            # for it: the address's cap, not a deadline, kept the room.
            assert after.by_client.get("127.0.0.1") == WebhookLimits.per_client_connections
            assert after.shed == before.shed
        finally:
            for raw in flood:
                raw.close()
        assert [doc.key for doc in store.list("alert")] == [alert_id(1)]


def test_when_the_pool_is_full_of_waiting_connections_the_busiest_address_gives_way(tmp_path: Path) -> None:
    limits = WebhookLimits(max_connections=50, per_client_connections=50)
    with running_webhook(tmp_path / "state.db", limits=limits) as (webhook, _):
        port = int(webhook.url.rsplit(":", 1)[1])
        flood = [raw for n in (1, 3, 4) for raw in _open_idle(port, 30 if n == 1 else 10, f"127.0.0.{n}")]
        try:
            _until_gate_saw(webhook, 50)
            full = webhook.connections()
            assert (full.open, full.by_client["127.0.0.1"]) == (50, 30)
            assert _post_from(webhook, "127.0.0.2", 2).status_code == 202
            after = webhook.connections()
            assert after.shed == full.shed + 1
            assert after.by_client["127.0.0.1"] == 29  # the busiest gave way, the others kept theirs
            assert (after.by_client["127.0.0.3"], after.by_client["127.0.0.4"]) == (10, 10)
        finally:
            for raw in flood:
                raw.close()


def test_a_connection_that_sends_nothing_is_closed_at_the_first_byte_deadline(tmp_path: Path) -> None:
    limits = WebhookLimits(first_byte_timeout=0.5, header_timeout=30.0)
    with running_webhook(tmp_path / "state.db", limits=limits) as (webhook, _):
        port = int(webhook.url.rsplit(":", 1)[1])
        (silent,) = _open_idle(port, 1)
        (talking,) = _open_idle(port, 1)
        talking.sendall(b"POST /api/alerts HTTP/1.1\r\n")  # one byte in: the head deadline applies
        started = time.monotonic()
        assert silent.recv(1) == b""
        assert time.monotonic() - started < limits.header_timeout / 2  # the first-byte, not the head deadline
        talking.settimeout(0.5)
        with pytest.raises(TimeoutError):  # still open
            talking.recv(1)
        _until_gate_holds(webhook, 1)  # the silent one is gone, the talking one held
        silent.close()
        talking.close()


def test_tls_connections_that_never_finish_a_handshake_are_counted_and_cut_off(tmp_path: Path) -> None:
    _, cert, key = make_ca_and_server(tmp_path / "tls")
    limits = WebhookLimits(first_byte_timeout=1.0, per_client_connections=20)
    with running_webhook(tmp_path / "state.db", tls=TlsFiles(cert, key), limits=limits) as (webhook, _):
        port = int(webhook.url.rsplit(":", 1)[1])
        flood = _open_idle(port, 60)
        try:
            _until_gate_saw(webhook, 60)
            assert webhook.connections().by_client == {"127.0.0.1": 20}
            ca = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
            assert _post_from(webhook, "127.0.0.2", 3, verify=ca).status_code == 202
            started = time.monotonic()
            for raw in flood:  # each is closed by the server, within its handshake deadline
                with contextlib.suppress(ConnectionResetError):
                    assert raw.recv(1) == b""
            assert time.monotonic() - started < 5
            _until_gate_holds(webhook, 0)  # each close reaches the gate's count right after
        finally:
            for raw in flood:
                raw.close()


# -- TLS -------------------------------------------------------------------------------------


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def make_ca_and_server(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 it signed: (ca, cert, key) files."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"test CA {x509.random_serial_number():x}")  # two CAs never share a name
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


def test_the_webhook_serves_tls_to_a_client_that_trusts_the_given_ca(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server(tmp_path / "tls")
    with running_webhook(tmp_path / "state.db", tls=TlsFiles(cert, key)) as (webhook, store):
        assert webhook.url.startswith("https://127.0.0.1:")
        response = _post(webhook, {"id": alert_id(7)}, verify=ssl.create_default_context(cafile=str(ca)))
        assert response.status_code == 202, response.text
        assert [doc.key for doc in store.list("alert")] == [alert_id(7)]
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA refuses it
            _post(webhook, {"id": alert_id(8)}, verify=ssl.create_default_context())
        plain = webhook.url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):  # nor is the secret taken over plain http
            httpx.post(f"{plain}/api/alerts", json={"id": alert_id(9)}, headers=_AUTH, timeout=5)
        assert [doc.key for doc in store.list("alert")] == [alert_id(7)]


# -- loopback: Host, Origin, content type, the secret's encoding ------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example"}, 400),  # DNS rebinding: a name that resolves to 127.0.0.1
        ({"Host": "evil.example:8080"}, 400),
        ({"Origin": "http://evil.example"}, 403),  # a web page's fetch
        ({"Origin": "null"}, 403),
        ({"Content-Type": "text/plain"}, 415),  # a form post needs no CORS preflight
    ],
)
def test_on_loopback_a_foreign_host_origin_or_content_type_is_refused(
    hook: tuple[Webhook, SqliteStore], headers: dict[str, str], status: int
) -> None:
    webhook, store = hook
    response = _post(webhook, {"id": alert_id(3)}, headers={**_AUTH, **headers})
    assert response.status_code == status, response.text
    assert store.list("alert") == []


def test_on_loopback_a_local_host_and_origin_are_taken(hook: tuple[Webhook, SqliteStore]) -> None:
    webhook, _ = hook
    port = webhook.url.rsplit(":", 1)[1]
    headers = {**_AUTH, "Host": f"localhost:{port}", "Origin": f"http://127.0.0.1:{port}"}
    assert _post(webhook, {"id": alert_id(4)}, headers=headers).status_code == 202


def test_a_non_ascii_secret_matches_as_utf8_bytes(tmp_path: Path) -> None:
    secret = "clé-secrète-ünïcode-0123456789"
    with running_webhook(tmp_path / "state.db", secret=secret) as (webhook, _):
        url = f"{webhook.url}/api/alerts"
        body = json.dumps({"id": alert_id(5)}).encode()
        utf8 = {b"Content-Type": b"application/json", b"x-functions-key": secret.encode()}
        right = httpx.post(url, content=body, headers=utf8, timeout=10)
        assert right.status_code == 202, right.text
        latin = {**utf8, b"x-functions-key": secret.encode("latin-1")}
        assert httpx.post(url, content=body, headers=latin, timeout=10).status_code == 401
        assert httpx.post(url, content=body, params={"code": secret}, headers=_JSON, timeout=10).status_code == 202


# -- database errors: 503, and nothing half-recorded -------------------------------------------


def test_a_database_error_in_the_middle_of_intake_gets_503_and_leaves_nothing(
    hook: tuple[Webhook, SqliteStore], tmp_path: Path
) -> None:
    """The alert row is written, then the work row fails (as a damaged file fails): an error that
    is not an OperationalError must still roll the whole unit back and answer 503."""
    webhook, store = hook
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("CREATE TRIGGER broken BEFORE INSERT ON work BEGIN SELECT RAISE(ABORT, 'disk image malformed'); END")
    response = _post(webhook, {"id": alert_id(6)})
    assert response.status_code == 503, response.text
    assert "deliver it again" in response.json()["error"]
    assert (store.list("alert"), store.items(), store.history(f"alert:{alert_id(6)}")) == ([], [], [])
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("DROP TRIGGER broken")
    assert _post(webhook, {"id": alert_id(6)}).status_code == 202
    assert [item.key for item in store.items()] == [f"triage:{alert_id(6)}"]


# -- logs -------------------------------------------------------------------------------------


def test_a_client_that_hangs_up_is_one_debug_line(
    hook: tuple[Webhook, SqliteStore], caplog: pytest.LogCaptureFixture
) -> None:
    webhook, store = hook
    port = int(webhook.url.rsplit(":", 1)[1])
    caplog.set_level(logging.DEBUG)
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(
                f"POST /api/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nx-functions-key: {SECRET}\r\n"
                "Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{".encode()
            )
    assert _post(webhook, {"id": alert_id(1)}).status_code == 202  # served after the hang-ups
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == []
    assert not any(r.exc_info for r in caplog.records)
    assert [doc.key for doc in store.list("alert")] == [alert_id(1)]


def test_the_delivery_function_imports_without_the_asgi_stack() -> None:
    """The Azure Functions trigger will call `AlertIntake` with no Starlette nor uvicorn."""
    code = (
        "import sys; import joedefender.hosts.alert_intake; "
        "assert not {'starlette', 'uvicorn'} & set(sys.modules), sorted(sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-500:]


def test_the_service_refuses_a_plain_http_webhook_off_loopback_even_from_settings_built_in_code(
    tmp_path: Path,
) -> None:
    from joedefender.bootstrap import open_connector
    from joedefender.hosts.standalone.service import Service, ServiceOptions
    from joedefender.settings import Settings, SettingsError
    from tests.fakes import FakeDefender, FakeSandbox
    from tests.test_settings import REQUIRED

    settings = Settings.model_validate({**REQUIRED, "WebhookBindAddress": "0.0.0.0", "WebhookSecret": SECRET})  # noqa: S104
    with (
        SqliteStore(tmp_path / "state.db") as store,
        open_connector(settings, store=store, defender=FakeDefender(), sandbox=FakeSandbox()) as connector,
        pytest.raises(SettingsError, match="WebhookBindAddress"),
    ):
        Service(connector, ServiceOptions(poll=False, webhook=True))
