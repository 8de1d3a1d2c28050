"""A 429 met by one of four workers of a process holds the other three at once (issue 22, point 6).

Four threads start live response actions through one Defender client, as four workers of one
instance do, under the limiter the host gives them: the in-process one (the standalone service)
or the budget shared through Azure Tables (the Functions app, on Azurite). The emulator answers
one of the requests 429 with a Retry-After. A wrapper around the limiter notes when the client
held the family (right as the 429 came back) and when each request was sent: the client asks the
limiter whether its family is held right before the request's first byte goes out (httpcore's
trace), and a request it is told is free is sent then. The emulator's own timeline says when each
request was received and answered. Requests the emulator receives inside the Retry-After window
must be ones sent before the 429 came back; none may be sent after it until the window has passed,
not even one that took its slot before (its connection or its token was slow).
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager
from typing import Any

import pytest

from joedefender.adapters.defender import DOCUMENTED_RATES, RateLimiter
from joedefender.adapters.defender.limiter import Family, Limiter
from joedefender.adapters.defender.models import LiveResponseCommand
from joedefender.bootstrap import SHARED_RATES
from tests.azurite import azurite
from tests.clients.mde_fixtures import WINDOWS_PATH, add_fault, client_for, emulators, timeline
from tests.stores.conftest import open_azure_store
from tests.stores.helpers import FakeClock

__all__ = ["azurite"]  # the session's Azurite, for the shared budget

_SCALE = 0.1  # a minute is 6 real seconds: 10 live response starts fit in it
_RETRY_AFTER = 3  # real seconds
_MACHINES = [f"{n + 1:040x}" for n in range(16)]
_WORKERS = 4
_STARTS = 3  # per worker


class _Noting:
    """The limiter, noting when each request was sent and each hold set (monotonic seconds)."""

    def __init__(self, inner: Limiter) -> None:
        self._inner = inner
        self.sent: list[float] = []
        self.holds: list[tuple[float, float]] = []  # (when, seconds)
        self._lock = threading.Lock()

    @property
    def time_scale(self) -> float:
        return self._inner.time_scale

    def acquire(self, family: str) -> None:
        self._inner.acquire(family)

    def slot(self, family: str) -> AbstractContextManager[None]:
        return self._inner.slot(family)

    def wait_needed(self, family: str) -> float:
        return self._inner.wait_needed(family)

    def held(self, family: str) -> float:
        """Asked right before a request's first byte: 0 means it goes out now."""
        seconds = self._inner.held(family)
        if family == Family.LIVE_RESPONSE and seconds <= 0:
            with self._lock:
                self.sent.append(time.monotonic())
        return seconds

    def hold(self, family: str, seconds: float) -> None:
        if family == Family.LIVE_RESPONSE:
            with self._lock:
                self.holds.append((time.monotonic(), seconds))
        self._inner.hold(family, seconds)


def _machines() -> list[dict[str, Any]]:
    return [{"id": m, "computerDnsName": f"pc{n}.contoso.com", "files": [{"path": WINDOWS_PATH, "sample": "small"}]}
            for n, m in enumerate(_MACHINES)]  # fmt: skip


def _four_workers(limiter: Limiter) -> tuple[_Noting, list[dict[str, Any]]]:
    """Four workers start 12 actions on 16 machines; the 5th request is answered 429."""
    noting = _Noting(limiter)
    with emulators(time_scale=_SCALE, machines=_machines()) as emu, client_for(emu, limiter=noting) as client:
        client.get_machine(_MACHINES[0])  # the token and a connection, before the workers start
        add_fault(emu, path=r"/runliveresponse$", status=429, retry_after=_RETRY_AFTER, times=1, skip=4)
        errors: list[BaseException] = []

        def worker(index: int) -> None:
            try:
                for n in range(_STARTS):
                    machine = _MACHINES[index + _WORKERS * n]
                    client.run_live_response(machine, [LiveResponseCommand.get_file(WINDOWS_PATH)], f"w{index}-{n}")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(_WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        return noting, timeline(emu, "liveresponse.run")


def _check(noting: _Noting, exchanges: list[dict[str, Any]]) -> None:
    assert [e["status"] for e in exchanges].count(201) == _WORKERS * _STARTS
    [throttled] = [e for e in exchanges if e["status"] == 429]  # the injected one, no other
    [(held_at, seconds)] = noting.holds
    assert seconds == _RETRY_AFTER
    assert throttled["answered"] <= held_at  # the client held the family as the answer came back
    assert len(noting.sent) == len(exchanges)  # every request the emulator saw, the client sent
    # Nothing was sent after the 429 was back until its Retry-After had passed.
    assert [t for t in noting.sent if held_at < t < held_at + seconds] == []
    # So what the emulator received inside the window was sent before the 429 came back: at most
    # one a worker other than the one the 429 was for.
    window = (throttled["answered"], throttled["answered"] + seconds)
    received = [e for e in exchanges if window[0] < e["received"] < window[1]]
    sent_before = [t for t in noting.sent if t < held_at]
    assert len(received) <= _WORKERS - 1
    assert len(sent_before) >= len([e for e in exchanges if e["received"] < window[1]])
    retry = min((e for e in exchanges if e["received"] > throttled["answered"] and e["path"] == throttled["path"]),
                key=lambda e: e["received"])  # fmt: skip
    assert retry["received"] - throttled["answered"] >= seconds


def test_four_workers_of_one_process_send_nothing_inside_a_retry_after() -> None:
    noting, exchanges = _four_workers(RateLimiter(DOCUMENTED_RATES, time_scale=_SCALE))
    _check(noting, exchanges)


@pytest.mark.usefixtures("azurite")
def test_four_workers_on_the_shared_budget_send_nothing_inside_a_retry_after(request: pytest.FixtureRequest) -> None:
    with open_azure_store(request.getfixturevalue("azurite"), FakeClock()) as store:
        shared = store.rate_limiter(SHARED_RATES, time_scale=_SCALE)
        noting, exchanges = _four_workers(shared)
    _check(noting, exchanges)
