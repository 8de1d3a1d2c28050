"""The connector a Functions worker process shares across invocations, opened at first use.

The Python worker imports `function_app.py` once and then calls the functions, several at a time
on its thread pool; opening the clients and the store per invocation would pay a token fetch and
connection set-up every time. The engine is thread-safe (the standalone pool shares one too).
Settings are read from the app settings (the environment) when the first invocation needs them,
so a wrong setting fails that invocation with the setting named, not the indexing of the app.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass

from joedefender.bootstrap import Connector
from joedefender.hosts.azure.ports import PushStore
from joedefender.pipeline.facade import Status
from joedefender.settings import ConfigurationError


@dataclass(frozen=True)
class Hosted:
    """The connector and its store seen as the push-mode store it is."""

    connector: Connector
    store: PushStore


Opener = Callable[[], AbstractContextManager[Hosted]]
StatusOpener = Callable[[], AbstractContextManager[Status]]


class Runtime:
    def __init__(self, opener: Opener, *, instance: str | None = None, status: StatusOpener | None = None) -> None:
        """`status`: what the status reads come from when the connector cannot be built (the
        store alone, for a wrong Defender or Joe setting)."""
        self._opener = opener
        self._status_opener = status
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self._hosted: Hosted | None = None
        self._status: Status | None = None
        # Lease owners must differ between instances and processes; WEBSITE_INSTANCE_ID names the instance.
        where = instance or os.environ.get("WEBSITE_INSTANCE_ID", "")[:12] or socket.gethostname()
        self.instance = f"{where}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def __repr__(self) -> str:
        return f"Runtime(instance={self.instance!r}, open={self._hosted is not None})"

    def hosted(self) -> Hosted:
        with self._lock:
            if self._hosted is None:
                self._hosted = self._stack.enter_context(self._opener())
            return self._hosted

    def status(self) -> Status:
        """The connector's status reads; when a setting keeps the connector from being built,
        those of the store alone (the page must show the state while the settings are fixed)."""
        try:
            return self.hosted().connector.app.status
        except ConfigurationError:
            if self._status_opener is None:
                raise
        with self._lock:
            if self._status is None:
                self._status = self._stack.enter_context(self._status_opener())
            return self._status

    def owner(self, invocation: str) -> str:
        """A lease owner unique to one invocation."""
        return f"{self.instance}-{invocation}"

    def close(self) -> None:
        with self._lock:
            self._hosted = None
            self._status = None
            self._stack.close()
            self._stack = ExitStack()
