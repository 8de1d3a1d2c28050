"""The Functions app without the host and without storage: its bindings as the host indexes them,
the HTTP triggers called with real `func.HttpRequest`s, the sweeper and the log dimensions, on the
in-memory store and fakes (the queue triggers need the Azure store: test_functions_azurite.py)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import azure.functions as func
from joedefender.adapters.memory import MemoryStore
from joedefender.bootstrap import open_connector
from joedefender.domain.jobs import JobState, SampleJob
from joedefender.domain.keys import sample_work_key, triage_key
from joedefender.hosts.azure import telemetry
from joedefender.hosts.azure.functions import build_app
from joedefender.hosts.azure.runtime import Hosted, Runtime
from joedefender.hosts.azure.timers import SWEEP_GRACE
from joedefender.pipeline.clock import Clock
from joedefender.settings import Settings
from tests.azure.functions import bindings_of, call
from tests.azure.keys import DeployedKeys
from tests.fakes import FakeDefender, FakeSandbox, file_alert
from tests.test_settings import REQUIRED

HOST_JSON = Path(__file__).resolve().parents[2] / "deploy" / "functionapp" / "host.json"
_ALERT_ID = "da638640000000000001_1"
_MACHINE = "ab" * 20


class _Poisoned(MemoryStore):
    """The memory store with what the Functions app reads beyond `Store` for status."""

    poison: list[tuple[str, str]]

    def __init__(self) -> None:
        super().__init__()
        self.poison = []

    def poisoned(self) -> list[tuple[str, str]]:
        return list(self.poison)

    def relay_outbox(self, now: float, *, grace: float = 0.0, lease_grace: float | None = None) -> int:
        return 0  # the memory store's queue is in its transaction: no outbox


@pytest.fixture
def store() -> _Poisoned:
    return _Poisoned()


@pytest.fixture
def defender() -> FakeDefender:
    return FakeDefender()


@pytest.fixture
def later() -> list[float]:
    """Seconds the connector's clock is ahead of the real one."""
    return [0.0]


@pytest.fixture
def app(store: _Poisoned, defender: FakeDefender, later: list[float]) -> Iterator[func.FunctionApp]:
    settings = Settings.from_mapping({**REQUIRED, "PollerEnabled": "false"})

    def now() -> float:
        return time.time() + later[0]

    @contextmanager
    def opener() -> Iterator[Hosted]:
        with open_connector(
            settings, store=store, defender=defender, sandbox=FakeSandbox(), clock=Clock(source=now)
        ) as connector:
            yield Hosted(connector, store)  # type: ignore[arg-type]

    runtime = Runtime(opener, instance="unit")
    yield build_app(runtime)
    runtime.close()


def _post(app: func.FunctionApp, body: object, *, name: str = "alerts", content_type: str = "application/json") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = func.HttpRequest(
        method="POST", url=f"/api/{name}", body=raw, headers={"Content-Type": content_type}, params={}
    )
    return call(app, name, request)


def _get_status(app: func.FunctionApp, alert_id: str | None) -> Any:
    route = {} if alert_id is None else {"alert_id": alert_id}
    request = func.HttpRequest(method="GET", url="/api/status", body=b"", route_params=route)
    return call(app, "status", request)


def _timer() -> func.TimerRequest:
    from azure.functions.timer import TimerRequest

    return TimerRequest(past_due=False)


# -- what the host indexes --------------------------------------------------------------------


def test_bindings_are_what_the_host_needs(app: func.FunctionApp) -> None:
    bindings = bindings_of(app)
    assert set(bindings) == {
        "alerts",
        "joeaz_alerts",
        "status",
        "ui",
        "work",
        "liveresponse",
        "poller",
        "relay",
        "sweeper",
    }
    http = {name: bindings[name][0] for name in ("alerts", "joeaz_alerts", "status")}
    assert {b["authLevel"] for b in http.values()} == {"FUNCTION"}
    assert http["joeaz_alerts"]["route"] == "JoeSandboxDefender"
    assert http["alerts"]["methods"] == ["POST"]
    assert http["status"]["route"] == "status/{alert_id?}"
    queues = {name: bindings[name][0] for name in ("work", "liveresponse")}
    assert {name: (b["type"], b["queueName"], b["connection"]) for name, b in queues.items()} == {
        "work": ("queueTrigger", "joedefender-work", "AzureWebJobsStorage"),
        "liveresponse": ("queueTrigger", "joedefender-liveresponse", "AzureWebJobsStorage"),
    }
    assert {bindings[name][0]["type"] for name in ("poller", "relay", "sweeper")} == {"timerTrigger"}
    assert bindings["relay"][0]["schedule"] == "*/15 * * * * *"  # a dead instance's items: within 2 minutes


def test_each_http_function_has_its_own_key_and_the_intake_key_cannot_open_status(app: func.FunctionApp) -> None:
    """Every HTTP trigger needs a key (none is anonymous), and the key given for intake, the
    `alerts` function's own (deploy/logicapp.json), opens intake only: `status` shows every alert,
    file name and URL, and opens with its own key (or the host's, which is given to no one)."""
    keys = DeployedKeys.of(app)
    intake = keys.function_keys["alerts"]["default"]
    status = keys.function_keys["status"]["default"]
    assert keys.opens(app, "alerts", intake)
    assert not keys.opens(app, "status", intake)
    assert keys.opens(app, "status", status)
    assert not keys.opens(app, "alerts", status)
    for name in ("alerts", "joeaz_alerts", "status"):
        assert not keys.opens(app, name, "")  # no anonymous function


def test_host_json_is_chosen_on_purpose() -> None:
    host = json.loads(HOST_JSON.read_text())
    queues = host["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"  # what the store sends
    assert queues["batchSize"] + queues["newBatchThreshold"] <= 8  # live response steps per instance
    assert queues["maxDequeueCount"] > 1
    assert host["logging"]["applicationInsights"]["samplingSettings"]["isEnabled"] is False
    assert "00:10:00" <= host["functionTimeout"] <= "00:30:00"  # Flex and Premium; a large sample takes minutes


# -- the HTTP triggers ------------------------------------------------------------------------


def test_joeaz_body_and_bare_body_are_accepted_at_once(app: func.FunctionApp, store: _Poisoned) -> None:
    joeaz = {"alert": {"id": _ALERT_ID, "machineId": _MACHINE}, "threat_name": "X", "detection_source": "Y"}
    first = _post(app, joeaz, name="joeaz_alerts")
    assert first.status_code == 202
    assert json.loads(first.get_body()) == {"alertId": _ALERT_ID, "job": triage_key(_ALERT_ID), "status": "accepted"}
    again = _post(app, {"id": _ALERT_ID, "machineId": _MACHINE})
    assert (again.status_code, json.loads(again.get_body())["status"]) == (202, "already known")
    assert [item.key for item in store.items()] == [triage_key(_ALERT_ID)]
    stored = store.get("alert", _ALERT_ID)
    assert stored is not None
    assert stored.data["machine_id"] == _MACHINE


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        ({"id": "bad id with spaces"}, "application/json", 400),
        ({"id": _ALERT_ID}, "text/plain", 415),
        (b"", "application/json", 400),
    ],
)
def test_bad_deliveries_are_refused_with_the_reason(
    app: func.FunctionApp, store: _Poisoned, body: object, content_type: str, status: int
) -> None:
    answer = _post(app, body, content_type=content_type)
    assert answer.status_code == status
    assert json.loads(answer.get_body())["error"]
    assert store.items() == []


def test_status_shows_an_alerts_history_as_the_cli_does(app: func.FunctionApp, store: _Poisoned) -> None:
    _post(app, {"id": _ALERT_ID})
    answer = _get_status(app, _ALERT_ID)
    assert answer.status_code == 200
    assert answer.mimetype == "text/plain"
    text = answer.get_body().decode()
    assert f"Alert {_ALERT_ID}: received" in text
    assert "intake" in text
    assert "from webhook" in text
    assert _get_status(app, "da638640000000000002_2").status_code == 404
    assert _get_status(app, "no/such id").status_code == 400


def test_status_overview_lists_poisoned_messages_escaped(app: func.FunctionApp, store: _Poisoned) -> None:
    _post(app, {"id": _ALERT_ID})
    store.poison.append(("joedefender-work-poison", '{"key": "triage:x\x1b[31m"}'))
    text = _get_status(app, None).get_body().decode()
    assert "work items queued: 1" in text
    assert "poison queue messages: 1" in text
    assert "\x1b" not in text


def test_settings_that_do_not_load_answer_503_without_details() -> None:
    def opener() -> Any:
        Settings.from_mapping({"AzureClientSecret": "very-secret-value"})  # the rest is missing: SettingsError
        raise AssertionError("unreachable")

    app = build_app(Runtime(opener, instance="broken"))
    answer = _post(app, {"id": _ALERT_ID})
    assert answer.status_code == 503
    assert "very-secret-value" not in answer.get_body().decode()
    assert "AzureTenantID" not in answer.get_body().decode()


# -- the timers -------------------------------------------------------------------------------


def test_poller_on_takes_in_new_alerts(store: _Poisoned) -> None:
    defender = FakeDefender()
    recent = datetime.now(UTC) - timedelta(minutes=1)
    defender.add_alert(replace(file_alert(_ALERT_ID, _MACHINE, b"sample"), last_update_time=recent))
    settings = Settings.from_mapping(REQUIRED)

    @contextmanager
    def opener() -> Iterator[Hosted]:
        with open_connector(settings, store=store, defender=defender, sandbox=FakeSandbox()) as connector:
            yield Hosted(connector, store)  # type: ignore[arg-type]

    call(build_app(Runtime(opener, instance="poll")), "poller", _timer())
    assert defender.calls["list_alerts"] == 1
    assert [i.key for i in store.items()] == [triage_key(_ALERT_ID)]


def test_poller_off_by_setting_makes_no_defendercall(app: func.FunctionApp, defender: FakeDefender) -> None:
    call(app, "poller", _timer())
    assert defender.calls.get("list_alerts", 0) == 0


def test_sweeper_queues_stranded_work_again_and_leaves_live_items(
    app: func.FunctionApp, store: _Poisoned, later: list[float]
) -> None:
    _post(app, {"id": _ALERT_ID})
    lost = SampleJob(key="sha256:" + "a" * 64, kind="file", sha256="a" * 64, created_at=0, updated_at=0)
    store.create("job", lost.key, lost.model_dump(mode="json"))  # a job whose work item is gone
    done = SampleJob(key="sha256:" + "b" * 64, kind="file", created_at=0, updated_at=0, state=JobState.DONE)
    store.create("job", done.key, done.model_dump(mode="json"))
    call(app, "sweeper", _timer())
    assert sorted(i.key for i in store.items()) == sorted([triage_key(_ALERT_ID), sample_work_key(lost.key)])
    before = {i.key: i.generation for i in store.items()}
    call(app, "sweeper", _timer())  # each has a live item now: nothing is bumped
    assert {i.key: i.generation for i in store.items()} == before
    # The triage is taken by an instance that then dies: its lease runs out and nobody takes it.
    assert store.claim("dies", time.time(), 1.0) is not None
    later[0] = SWEEP_GRACE + 60
    call(app, "sweeper", _timer())
    after = {i.key: i.generation for i in store.items()}
    assert after[triage_key(_ALERT_ID)] > before[triage_key(_ALERT_ID)]


# -- log dimensions ---------------------------------------------------------------------------


def test_log_records_carry_the_ids_as_custom_dimensions(caplog: pytest.LogCaptureFixture) -> None:
    telemetry.install()
    link = f"sha256:{'c' * 64}|{_ALERT_ID}"
    with caplog.at_level(logging.INFO):
        with telemetry.bound(work_item=f"comment:{link}", sample="s", alert_id=_ALERT_ID):
            logging.getLogger("joedefender.pipeline").info("inside")
        logging.getLogger("joedefender.pipeline").info("outside")
    inside, outside = caplog.records[-2:]
    assert inside.custom_dimensions == {"work_item": f"comment:{link}", "sample": "s", "alert_id": _ALERT_ID}  # type: ignore[attr-defined]
    assert inside.alert_id == _ALERT_ID  # type: ignore[attr-defined]
    assert not hasattr(outside, "custom_dimensions")


def test_ids_of_a_work_key() -> None:
    link = f"sha256:{'c' * 64}|{_ALERT_ID}"
    assert telemetry.ids_of(f"comment:{link}") == {
        "work_item": f"comment:{link}",
        "sample": f"sha256:{'c' * 64}",
        "alert_id": _ALERT_ID,
    }
    assert telemetry.ids_of(f"cleanup:{_MACHINE}|n1")["machine_id"] == _MACHINE
    assert telemetry.ids_of(triage_key(_ALERT_ID))["alert_id"] == _ALERT_ID
    assert telemetry.ids_of("incident:2972395")["incident_id"] == "2972395"


def test_function_app_py_builds_the_app_without_touching_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the host loads: indexing needs no settings and no storage (the first invocation does)."""
    import runpy

    monkeypatch.setenv("StoragePrefix", "contoso-jd")
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    loaded = runpy.run_path(str(HOST_JSON.parent / "function_app.py"))
    bindings = bindings_of(loaded["app"])
    assert bindings["work"][0]["queueName"] == "contoso-jd-work"
    assert bindings["liveresponse"][0]["queueName"] == "contoso-jd-liveresponse"


def test_status_escapes_attacker_text_and_bounds_the_answer(
    app: func.FunctionApp, store: _Poisoned, monkeypatch: pytest.MonkeyPatch
) -> None:
    from joedefender.hosts.azure import http_triggers
    from joedefender.pipeline.records import Records

    hostile = "http://evil.example/\x1b[2J\u202e" + "a" * 100_000
    uow = store.unit_of_work()
    uow.create("job", "url:1", SampleJob(key="url:1", kind="url", url=hostile, created_at=1, updated_at=1).model_dump())
    uow.commit()
    text = _get_status(app, None).get_body().decode()
    assert Records(store).jobs.get("url:1") is not None
    assert "\x1b" not in text
    assert "\u202e" not in text
    assert "\\u{001B}[2J\\u{202E}" in text
    assert len(text) < 10_000  # a 100,000-character URL once gave 699 KB
    monkeypatch.setattr(http_triggers, "MAX_STATUS_CHARS", 500)
    text = _get_status(app, None).get_body().decode()
    assert text.endswith("… cut at 500 characters\n")
    assert len(text) < 600


def test_log_records_are_made_safe_by_the_record_factory(caplog: pytest.LogCaptureFixture) -> None:
    telemetry.install()
    with caplog.at_level(logging.INFO):
        logging.getLogger("joedefender.pipeline").info(
            "skipping %s", "x\x1b[2J\u202e\nJoe Sandbox: CLEAN" + "a" * 10_000
        )
    message = caplog.records[-1].getMessage()
    assert message.startswith("skipping x\\u{001B}[2J\\u{202E}\\nJoe Sandbox: CLEAN")
    assert len(message) <= 4000


def test_a_download_links_signature_stays_out_of_the_log_under_the_record_factory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The factory formats a record as it is made, before the httpx logger's filter sees it: the
    filter must still blank a result link's signature (a credential) out of the formatted message."""
    from joedefender.adapters._microsoft import transport  # its filter on the httpx logger

    assert transport.redact_signature("?sig=x") == "?sig=***"
    telemetry.install()
    link = "https://blob.example/result?sv=2024&sig=LiveResponseSecret%3D&se=2030"
    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info('HTTP Request: %s %s "%s"', "GET", link, "HTTP/1.1 200 OK")
    message = caplog.records[-1].getMessage()
    assert "sig=***" in message
    assert "LiveResponseSecret" not in message
