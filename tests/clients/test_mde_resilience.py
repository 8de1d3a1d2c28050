"""The MDE client against the emulator over real sockets: tokens, 429s, 5xx, timeouts, drops, limits."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest

from joedefender.adapters._microsoft.errors import core_error
from joedefender.adapters.defender import (
    DefenderAuthError,
    DefenderServerError,
    DefenderTransportError,
    Family,
    RateLimiter,
    ThrottledError,
)
from joedefender.bootstrap import defender_client
from joedefender.domain.errors import Transient

from .mde_fixtures import (
    SECRET,
    _admin,
    add_fault,
    alert,
    calls,
    client_for,
    count,
    emulators,
    revoke_tokens,
    settings_for,
    status_count,
    timeline,
)
from .timeline import assert_every_retry_after_was_waited

ALERT_ID = alert(1)["id"]


def test_a_revoked_token_is_refreshed_once_and_the_call_succeeds(caplog):
    caplog.set_level(logging.DEBUG)
    with emulators() as emu, client_for(emu) as client:
        assert client.get_alert(ALERT_ID).id == ALERT_ID
        assert count(emu, "token") == 1
        token = client._tokens.token()
        revoke_tokens(emu)  # the token expires in the middle of the run
        assert client.get_alert(ALERT_ID).id == ALERT_ID
        assert count(emu, "token") == 2
        assert status_count(emu, "alerts.get", 401) == 1
        assert status_count(emu, "alerts.get", 200) == 2
        assert client.get_alert(ALERT_ID).id == ALERT_ID  # the new token is reused
        assert count(emu, "token") == 2
    assert token not in caplog.text
    assert SECRET not in caplog.text


def test_a_token_that_expires_mid_run_is_replaced():
    with emulators() as emu, client_for(emu) as client:
        client.get_alert(ALERT_ID)
        emu.clock.advance(3600)  # an hour on: the token's lifetime (3599 s) is over
        assert client.get_alert(ALERT_ID).id == ALERT_ID
        assert count(emu, "token") == 2
        assert status_count(emu, "alerts.get", 401) == 1


def test_a_second_401_after_the_refresh_is_an_auth_error():
    with emulators() as emu, client_for(emu) as client:
        add_fault(emu, path=r"^/api/alerts/", status=401, code="Unauthorized", times=5)
        with pytest.raises(DefenderAuthError) as caught:
            client.get_alert(ALERT_ID)
        assert caught.value.status == 401
        assert count(emu, "alerts.get") == 2  # the first try and the one retry, nothing more
        assert count(emu, "token") == 2


def test_a_bad_secret_is_an_auth_error_that_does_not_show_the_secret():
    wrong = "Wr0ng-s3cret-v4lue~that-must-not-leak"
    with emulators() as emu, client_for(emu, secret=wrong) as client:
        with pytest.raises(DefenderAuthError) as caught:
            client.get_alert(ALERT_ID)
        assert "AADSTS7000215" in str(caught.value)
        for text in (str(caught.value), repr(caught.value), repr(client), repr(client._tokens)):
            assert wrong not in text
        assert caught.value.__cause__ is None
        assert count(emu, "alerts.get") == 0


def test_bootstrap_builds_a_working_client_from_the_settings():
    with emulators() as emu:
        settings = settings_for(emu)
        with defender_client(settings, time_scale=emu.scenario.time_scale) as client:
            assert client.get_alert(ALERT_ID).title == "Alert 1"
            assert SECRET not in repr(client)


def test_a_429_storm_is_honoured_to_the_second():
    """The emulator's timeline is the judge, not the test's clock: five threads each read their own
    alert 21 times through one client; whenever the emulator answered 429 (its own limiter, 100 a
    minute, or two injected 429s so there is always one to judge, however slow the machine), the
    next read of that alert reached it no sooner than the Retry-After it was given."""
    alerts = [alert(n) for n in range(1, 6)]
    with emulators(time_scale=0.1, alerts=alerts) as emu:  # a minute is 6 real seconds
        with client_for(emu, limiter=RateLimiter({}), max_retry=3) as client:
            client.get_alert(alerts[0]["id"])  # token and connection warm
            add_fault(emu, path=r"^/api/alerts/", status=429, retry_after=1, times=2)
            errors: list[BaseException] = []

            def burst(alert_id: str) -> None:
                try:
                    for _ in range(21):
                        client.get_alert(alert_id)
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=burst, args=(a["id"],)) for a in alerts]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        exchanges = timeline(emu, "alerts.get")
    assert errors == []
    statuses = [e["status"] for e in exchanges]
    assert statuses.count(200) == 106  # every read got its answer in the end
    throttled = [e for e in exchanges if e["status"] == 429]
    assert len(throttled) >= 2
    assert_every_retry_after_was_waited(exchanges)


def test_429_with_a_retry_after_beyond_the_budget_raises_throttled_at_once():
    with emulators() as emu, client_for(emu, retry_timeout=5.0) as client:
        add_fault(emu, path=r"^/api/alerts/", status=429, retry_after=60)
        start = time.monotonic()
        with pytest.raises(ThrottledError) as caught:
            client.get_alert(ALERT_ID)
        assert time.monotonic() - start < 2.0
        assert caught.value.retry_after == 60
        assert caught.value.target
        assert count(emu, "alerts.get") == 1


def test_each_429_waits_its_retry_after():
    with emulators() as emu, client_for(emu, max_retry=3) as client:
        add_fault(emu, path=r"^/api/alerts/", status=429, retry_after=1, times=2)
        start = time.monotonic()
        assert client.get_alert(ALERT_ID).id == ALERT_ID
        assert time.monotonic() - start >= 2.0
        assert status_count(emu, "alerts.get", 429) == 2
        assert status_count(emu, "alerts.get", 200) == 1


def test_a_retry_after_is_honoured_by_every_thread_of_the_client():
    """Thread A gets a 429 with Retry-After: 2; thread B, starting right after, waits it out too
    instead of sending at once (it would have got a 200: the fault fires once)."""
    with emulators() as emu, client_for(emu, max_retry=3) as client:
        add_fault(emu, path=r"^/api/alerts/", status=429, retry_after=2, times=1)
        first = threading.Thread(target=client.get_alert, args=(ALERT_ID,))
        first.start()
        deadline = time.monotonic() + 60
        # until A has its 429: the client holds the family (the emulator counting it is not enough,
        # A may not have read the answer yet)
        while client.limiter.held(Family.ALERTS) <= 0:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        throttled_at = time.monotonic()
        assert client.get_alert(ALERT_ID).id == ALERT_ID
        waited = time.monotonic() - throttled_at
        first.join()
        assert waited >= 1.5, waited
        assert status_count(emu, "alerts.get", 429) == 1
        assert status_count(emu, "alerts.get", 200) == 2


def test_a_5xx_burst_is_recovered():
    with emulators() as emu, client_for(emu, max_retry=4) as client:
        add_fault(emu, path=r"^/api/alerts/", status=503, times=3)
        assert client.get_alert(ALERT_ID).id == ALERT_ID
        assert status_count(emu, "alerts.get", 503) == 3
        assert status_count(emu, "alerts.get", 200) == 1


def test_5xx_beyond_max_retry_is_a_server_error():
    with emulators() as emu, client_for(emu, max_retry=2) as client:
        add_fault(emu, path=r"^/api/alerts/", status=500)
        with pytest.raises(DefenderServerError) as caught:
            client.get_alert(ALERT_ID)
        assert caught.value.status == 500
        assert count(emu, "alerts.get") == 3  # one try and two retries


def test_a_response_slower_than_the_timeout_is_retried():
    timeout = httpx.Timeout(10.0, read=0.3)
    with emulators() as emu, client_for(emu, timeout=timeout) as client:
        client.get_alert(ALERT_ID)
        add_fault(emu, path=r"^/api/alerts/", delay=1.0, times=1)
        start = time.monotonic()
        assert client.get_alert(ALERT_ID).id == ALERT_ID
        assert time.monotonic() - start >= 0.3
        assert count(emu, "alerts.get") >= 2


def test_a_response_that_is_always_too_slow_is_a_transport_error():
    timeout = httpx.Timeout(10.0, read=0.2)
    with emulators() as emu, client_for(emu, timeout=timeout, max_retry=1) as client:
        client.get_alert(ALERT_ID)
        add_fault(emu, path=r"^/api/alerts/", delay=0.6)
        with pytest.raises(DefenderTransportError) as caught:
            client.get_alert(ALERT_ID)
        assert "ReadTimeout" in str(caught.value)
        assert not caught.value.maybe_applied


def test_a_dropped_connection_is_retried():
    with emulators() as emu, client_for(emu) as client:
        add_fault(emu, path=r"^/api/alerts/", drop=True, times=2)
        assert client.get_alert(ALERT_ID).id == ALERT_ID
        assert count(emu, "alerts.get", "dropped") == 2
        assert status_count(emu, "alerts.get", 200) == 1


def test_a_comment_is_not_repeated_after_a_dropped_connection():
    with emulators() as emu, client_for(emu) as client:
        client.get_alert(ALERT_ID)
        add_fault(emu, method="PATCH", path=r"^/api/alerts/", drop=True, times=1)
        with pytest.raises(DefenderTransportError) as caught:
            client.add_comment(ALERT_ID, "Joe Sandbox: malicious")
        assert caught.value.maybe_applied
        assert count(emu, "alerts.update") == 1


@pytest.mark.parametrize(
    ("fault", "settles_in"),
    [({"delay": 1.0}, 0.3), ({"status": 504}, 0.3), ({"status": 500}, None), ({"drop": True}, None)],
    ids=["timeout", "gateway-timeout", "server-error", "dropped"],
)
def test_an_unanswered_comment_says_when_a_late_write_must_have_landed(fault, settles_in):
    """The write is not repeated, and when the client (or a gateway) stopped waiting before
    Defender answered, the error says how long Defender may still be applying it: as long again
    as the client waited (its read timeout). An answer or a dropped connection ended the request."""
    timeout = httpx.Timeout(10.0, read=0.3)
    with emulators() as emu, client_for(emu, timeout=timeout) as client:
        add_fault(emu, method="PATCH", path=r"^/api/alerts/", times=1, **fault)
        with pytest.raises((DefenderTransportError, DefenderServerError)) as caught:
            client.add_comment(ALERT_ID, "Joe Sandbox: malicious")
        assert isinstance(caught.value, DefenderTransportError | DefenderServerError)
        assert caught.value.settles_in == settles_in
        with _admin(emu) as admin:  # sent once, not repeated
            assert [rule["fired"] for rule in admin.get("/_emulator/faults").json()] == [1]
        translated = core_error(caught.value, "defender")
        assert isinstance(translated, Transient)
        assert translated.settles_in == settles_in


def test_the_limiter_keeps_a_burst_of_300_reads_under_the_documented_rate():
    with emulators(rate_limits=True, time_scale=0.01) as emu, client_for(emu) as client:
        start = time.monotonic()
        failures: list[BaseException] = []

        def reader() -> None:
            try:
                for _ in range(50):
                    client.get_alert(ALERT_ID)
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        elapsed = time.monotonic() - start
        assert failures == []
        counted = calls(emu)["alerts.get"]
        assert counted["calls"] == 300
        assert counted["throttled"] == 0
        # 300 reads at 100 per (scaled) minute take at least two full minutes: 1.2 real seconds
        assert elapsed >= 2 * 60 * emu.scenario.time_scale


def test_a_comment_is_not_repeated_after_a_5xx():
    """A 5xx may come after the comment was added (a fault `after` the handler): not sent twice."""
    with emulators() as emu, client_for(emu) as client:
        client.get_alert(ALERT_ID)
        add_fault(emu, method="PATCH", path=r"^/api/alerts/", status=500, after=True, times=1)
        with pytest.raises(DefenderServerError):
            client.add_comment(ALERT_ID, "Joe Sandbox: malicious")
        assert count(emu, "alerts.update") == 1
        assert [c.comment for c in client.get_alert(ALERT_ID).comments] == ["Joe Sandbox: malicious"]
