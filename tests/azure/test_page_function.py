"""The operator's page as the Functions app serves it: the `ui` function, on its own key (the
intake key the Logic App holds cannot open it, its key opens nothing else), the same page as the
standalone service's with the same headers, links that carry the key the browser sent, and the
state shown from the Azure store alone when a Defender or Joe setting is wrong (on Azurite)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import azure.functions as func
from joedefender.adapters.memory import MemoryStore
from joedefender.bootstrap import open_connector
from joedefender.hosts.azure.entry import build_from_environment
from joedefender.hosts.azure.functions import build_app
from joedefender.hosts.azure.runtime import Hosted, Runtime
from joedefender.hosts.page.render import CONTENT_SECURITY_POLICY
from joedefender.pipeline.facade import Status
from joedefender.settings import ConfigurationError, Settings
from tests.azure.functions import bindings_of, call
from tests.azure.keys import DeployedKeys
from tests.azurite import unique_prefix
from tests.fakes import FakeDefender, FakeSandbox
from tests.test_settings import REQUIRED
from tests.world import World

_ALERT_ID = "da638640000000000001_1"
_KEY = "the-ui-functions-own-key"


def _get(app: func.FunctionApp, path: str, **params: str) -> Any:
    request = func.HttpRequest(
        method="GET", url=f"/api/ui/{path}", body=b"", route_params={"path": path}, params=params
    )
    return call(app, "ui", request)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def app(store: MemoryStore) -> Iterator[func.FunctionApp]:
    settings = Settings.from_mapping({**REQUIRED, "PollerEnabled": "false"})

    @contextmanager
    def opener() -> Iterator[Hosted]:
        with open_connector(settings, store=store, defender=FakeDefender(), sandbox=FakeSandbox()) as connector:
            yield Hosted(connector, store)  # type: ignore[arg-type]

    runtime = Runtime(opener, instance="unit")
    yield build_app(runtime)
    runtime.close()


def test_the_ui_function_is_on_its_own_key_and_the_intake_key_is_refused(app: func.FunctionApp) -> None:
    binding = bindings_of(app)["ui"][0]
    assert (binding["type"], binding["authLevel"], binding["route"], binding["methods"]) == (
        "httpTrigger",
        "FUNCTION",
        "ui/{*path}",
        ["GET"],
    )
    keys = DeployedKeys.of(app)
    ui = keys.function_keys["ui"]["default"]
    intake = keys.function_keys["alerts"]["default"]
    assert not keys.opens(app, "ui", intake)  # what the Logic App holds cannot read the page
    assert not keys.opens(app, "ui", keys.function_keys["joeaz_alerts"]["default"])
    assert not keys.opens(app, "ui", "")
    assert keys.opens(app, "ui", ui)
    for other in ("alerts", "joeaz_alerts", "status"):
        assert not keys.opens(app, other, ui)  # and the page's key opens nothing else


def test_the_function_serves_the_page_with_its_headers_and_links_carrying_the_key(
    app: func.FunctionApp, store: MemoryStore
) -> None:
    call(app, "alerts", _post({"id": _ALERT_ID}))
    overview = _get(app, "", code=_KEY)
    assert overview.status_code == 200
    assert overview.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert overview.headers["X-Content-Type-Options"] == "nosniff"
    assert overview.headers["Cache-Control"] == "no-store"
    assert overview.headers["Referrer-Policy"] == "no-referrer"
    body = overview.get_body().decode()
    assert f'href="/api/ui/alerts/{_ALERT_ID}?code={_KEY}"' in body
    assert f'href="/api/ui/jobs?code={_KEY}"' in body
    alert = _get(app, f"alerts/{_ALERT_ID}", code=_KEY)
    assert alert.status_code == 200
    assert "from webhook" in alert.get_body().decode()
    assert _get(app, "alerts/da000000000000000000_404").status_code == 404
    assert _get(app, "alerts/not an id").status_code == 400
    assert _get(app, "jobs").status_code == 200
    assert _get(app, "elsewhere").status_code == 404
    # A key sent as a header (a proxy's) is not put into links.
    assert "code=" not in _get(app, "").get_body().decode()


def _post(body: dict[str, Any]) -> func.HttpRequest:
    return func.HttpRequest(
        method="POST", url="/api/alerts", body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )


def test_with_a_wrong_setting_the_page_shows_the_store_alone(make_world: Callable[..., World], azurite: Any) -> None:
    """The connector cannot be built (DefenderApiMaxRetry is not a number), so intake answers 503;
    the page still answers, from the Azure store, with what was recorded before."""
    from tests.pipeline.builders import alert, world
    from tests.world import scenario

    w = make_world(scenario(world(samples={}, machines=[], alerts=[alert(1, 1)])))
    environ = w.values | {"AzureWebJobsStorage": azurite.connection_string, "StoragePrefix": unique_prefix()}
    runtime, functions = build_from_environment(environ, instance="good")
    assert call(functions, "alerts", _post({"id": _ALERT_ID})).status_code == 202
    runtime.close()

    broken, functions = build_from_environment({**environ, "DefenderApiMaxRetry": "many"}, instance="broken")
    try:
        with pytest.raises(ConfigurationError):
            broken.hosted()
        assert call(functions, "alerts", _post({"id": "da638640000000000002_2"})).status_code == 503
        page = _get(functions, "")
        assert page.status_code == 200
        assert _ALERT_ID in page.get_body().decode()
        assert isinstance(broken.status(), Status)
        assert _get(functions, f"alerts/{_ALERT_ID}").status_code == 200
    finally:
        broken.close()
