"""The built-in poller: alerts updated since the last poll, over a moving lastUpdateTime window.

The watermark is kept in the store, so a restart continues where the last poll ended; the window
overlaps the previous one a little because Defender's clocks and ours differ, and intake makes a
repeated alert a no-op. Alerts the filters would skip are not even recorded, to keep the store
to what the connector works on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from joedefender.domain.triage import AlertFilters
from joedefender.pipeline.context import Context
from joedefender.pipeline.intake import Intake, InvalidAlertError

logger = logging.getLogger("joedefender.poller")
_OVERLAP = timedelta(minutes=2)
_WATERMARK = "poller"


class Poller:
    def __init__(
        self,
        ctx: Context,
        intake: Intake,
        *,
        interval: float,
        lookback: timedelta,
        on_new: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`clock` is the poller's idea of Defender's time; the window [since, now) is on it."""
        self._ctx = ctx
        self._clock = clock
        self._intake = intake
        self._interval = interval
        self._lookback = lookback
        self._on_new = on_new
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> int:
        """One poll; returns how many new alerts it took in."""
        ctx = self._ctx
        started = self._clock()
        meta = ctx.store.get("meta", _WATERMARK)
        if meta is not None:
            since = datetime.fromisoformat(meta.data["since"]) - _OVERLAP
        else:
            since = started - self._lookback
        filters: AlertFilters = ctx.config.filters
        new = 0
        for alert in ctx.defender.list_alerts(since, started, time_field="lastUpdateTime", expand_evidence=False):
            if filters.rejection(alert.detection_source, alert.severity, alert.status) is not None:
                continue
            try:
                accepted = self._intake.receive(
                    alert.id, machine_id=alert.machine_id, source="poller", updated_at=alert.last_update_time
                )
                if accepted.created:
                    new += 1
            except InvalidAlertError as exc:
                logger.warning("poller: skipping an alert Defender returned: %s", exc)
        data = {"since": started.isoformat()}
        if meta is None:
            ctx.store.create("meta", _WATERMARK, data)
        else:
            ctx.store.update(meta, data)
        if new:
            logger.info("poller: %d new alert(s)", new)
            self._on_new()
        return new

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # a failed poll is retried at the next tick
                logger.exception("poll failed")
            self._stop.wait(self._interval)
