"""The app as the Functions host loads it: settings and storage from the app settings.

The queue names the triggers bind to are fixed when the host indexes the app, so they come from
StoragePrefix read at import; everything else (the settings' validation, the clients, the store)
waits for the first invocation (`runtime`), so a wrong setting is reported with its name in the
invocation's log instead of failing the indexing without one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import azure.functions as func
from joedefender.bootstrap import open_azure_connector, open_azure_status
from joedefender.hosts.azure.functions import build_app
from joedefender.hosts.azure.ports import DEFAULT_PREFIX, queue_names
from joedefender.hosts.azure.runtime import Hosted, Runtime
from joedefender.pipeline.facade import Clock
from joedefender.settings import Settings


@contextmanager
def hosted(environ: Mapping[str, str], *, time_scale: float = 1.0) -> Iterator[Hosted]:
    settings = Settings.load(environ)
    with open_azure_connector(settings, environ, clock=Clock(scale=time_scale)) as (connector, store):
        yield Hosted(connector, store)


def build_from_environment(
    environ: Mapping[str, str], *, time_scale: float = 1.0, instance: str | None = None
) -> tuple[Runtime, func.FunctionApp]:
    """`time_scale` is 1 on Azure; the tests set the emulators' scale."""
    runtime = Runtime(
        lambda: hosted(environ, time_scale=time_scale), instance=instance, status=lambda: open_azure_status(environ)
    )
    prefix = environ.get("StoragePrefix", "").strip() or DEFAULT_PREFIX
    return runtime, build_app(runtime, queues=queue_names(prefix))


def app_from_environment() -> func.FunctionApp:
    return build_from_environment(os.environ)[1]
