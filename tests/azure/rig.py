"""Functions app instances for the end-to-end tests: each its own connector, app and harness
instance, as separate host instances of one app are (threads here, or a process of its own)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from joedefender.hosts.azure.entry import build_from_environment
from joedefender.hosts.azure.runtime import Runtime
from tests.azure.functions import call
from tests.azure.harness import Instance, QueueHost
from tests.hosts import environment

IN_FLIGHT = 2.0  # real seconds a delivered message stays hidden (the host's 10 minutes, scaled down)


@dataclass
class AppInstance:
    runtime: Runtime
    app: func.FunctionApp
    host: Instance

    def post(self, body: dict[str, Any], route: str = "alerts") -> func.HttpResponse:
        request = func.HttpRequest(
            method="POST",
            url=f"/api/{route}",
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        answer: func.HttpResponse = call(self.app, route if route == "alerts" else "joeaz_alerts", request)
        return answer

    def stop(self) -> None:
        self.host.stop()
        self.runtime.close()


def host_settings(time_scale: float, in_flight: float = IN_FLIGHT) -> QueueHost:
    return QueueHost.from_host_json(scale=time_scale, in_flight=in_flight)


def start_instance(
    environ: Mapping[str, str], *, time_scale: float, name: str, in_flight: float = IN_FLIGHT
) -> AppInstance:
    runtime, app = build_from_environment(environ, time_scale=time_scale, instance=name)
    host = Instance(app, environ["AzureWebJobsStorage"], host_settings(time_scale, in_flight), name=name).start()
    return AppInstance(runtime, app, host)


def start_process(
    environ: Mapping[str, str], *, time_scale: float, name: str, in_flight: float = IN_FLIGHT
) -> subprocess.Popen[str]:
    """An instance in a process of its own (`tests.azure.instance`), to be killed with SIGKILL."""
    env = environment(environ) | {
        "JOEDEFENDER_TEST_TIME_SCALE": str(time_scale),
        "JOEDEFENDER_TEST_NAME": name,
        "JOEDEFENDER_TEST_IN_FLIGHT": str(in_flight),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.azure.instance"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until the instance listens (or died)
    assert line.strip() == "ready", f"the instance process did not start: {line!r}"
    return process


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` every 50 ms (it is often a storage query) until it holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)
