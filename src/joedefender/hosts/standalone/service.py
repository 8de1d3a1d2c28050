"""The standalone service: workers, webhook and poller in one process, stopped cleanly by a signal.

Stopping loses nothing: every step's state is in the store, a step under way finishes, and an
item whose worker died is claimed again once its lease runs out.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from types import FrameType

from joedefender.bootstrap import Connector
from joedefender.hosts.standalone.poller import Poller
from joedefender.hosts.standalone.webhook import TlsFiles, Webhook
from joedefender.hosts.standalone.workers import WorkerPool
from joedefender.pipeline.facade import StoreError
from joedefender.settings import SettingsError

logger = logging.getLogger("joedefender.service")


@dataclass(frozen=True)
class ServiceOptions:
    poll: bool = True
    webhook: bool = True
    until_idle: bool = False


class Service:
    def __init__(self, connector: Connector, options: ServiceOptions) -> None:
        self._connector = connector
        self._options = options
        self._stop = threading.Event()
        settings = connector.settings
        app = connector.app
        for warning in settings.warnings():
            logger.warning("%s", warning)
        self.workers = WorkerPool(app, settings.workers)
        self.poller: Poller | None = None
        if options.poll and settings.poll_interval.total_seconds() > 0:
            self.poller = Poller(
                app,
                interval=settings.poll_interval.total_seconds(),
                lookback=settings.poll_lookback,
                on_new=self.workers.notify,
            )
        self.webhook: Webhook | None = None
        if options.webhook:
            problems = settings.webhook_problems()  # also for settings built in code, not loaded
            if problems:
                raise SettingsError(problems)
            # The settings refused a non-loopback address without TLS (unless a proxy terminates
            # it) or without a long enough secret; what is left to say is a warning.
            secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
            tls = None
            if settings.webhook_tls_cert_file is not None and settings.webhook_tls_key_file is not None:
                tls = TlsFiles(settings.webhook_tls_cert_file, settings.webhook_tls_key_file)
            self.webhook = Webhook(
                app,
                secret=secret,
                host=settings.webhook_bind_address,
                port=settings.webhook_port,
                on_new=self.workers.notify,
                tls=tls,
                ready=self._store_answers,
            )

    def _store_answers(self) -> bool:
        """Readiness: the state store can be read."""
        try:
            self._connector.app.next_due()
        except StoreError as exc:
            logger.warning("readiness: the state store does not answer: %s", exc)
            return False
        return True

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            logger.info("received %s: finishing the steps under way", signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> None:
        self.workers.start()
        try:
            if self.webhook is not None:
                self.webhook.start()
                logger.info("webhook listening on %s/api/alerts", self.webhook.url)
            if self.poller is not None:
                if self._options.until_idle:
                    self.poller.poll_once()
                else:
                    self.poller.start()
            if self._options.until_idle:
                waiter = threading.Thread(target=self._wait_idle, daemon=True)
                waiter.start()
            while not self._stop.wait(0.5):
                pass
        finally:
            if self.webhook is not None:
                self.webhook.stop()
            if self.poller is not None:
                self.poller.stop()
            self.workers.stop()

    def _wait_idle(self) -> None:
        self.workers.wait_idle()
        self._stop.set()
