"""Alerts read in bulk: ids taken in without their data (webhook, CLI) are read many per list call.

Intake notes each such id here. The first triage that needs one reads it together with the other
noted ids (one list call holds as many as the URL allows), and the triages of the others take
theirs from what that call returned; a triage whose alert is being read by another thread waits
for that read instead of making its own. Only this process's ids are batched (another instance
reads its own), and what a read returned is kept only until its triage takes it, and at most
`_KEEP` nominal seconds, since Defender may change the alert meanwhile.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from joedefender.domain.alerts import Alert
from joedefender.pipeline.context import Context

BATCH = 180  # ids per bulk read (the adapter splits them into list calls that fit a URL)
_NOTED_MAX = 20_000  # ids noted and not read yet; the oldest are forgotten (read one by one then)
_KEEP = 120.0  # nominal seconds a read alert waits for its triage
_WAIT = 30.0  # real seconds at most to wait for another thread's read of the same alert


class AlertReads:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._noted: OrderedDict[str, None] = OrderedDict()
        self._in_flight: set[str] = set()
        self._read: dict[str, tuple[Alert, float]] = {}
        self._changed = threading.Condition()

    def note(self, alert_id: str) -> None:
        """An alert whose triage will need it read from Defender."""
        with self._changed:
            self._noted[alert_id] = None
            self._noted.move_to_end(alert_id)
            while len(self._noted) > _NOTED_MAX:
                self._noted.popitem(last=False)

    def read(self, alert_id: str) -> Alert:
        """The alert with its evidence: from a bulk read (this one, or another thread's), or, when
        the bulk read did not return it, from a GET of its own (`NotFound` if Defender has none)."""
        batch = self._take(alert_id)
        if batch is None:
            return self._taken(alert_id)
        try:
            alerts = self._ctx.defender.get_alerts(batch)
        except BaseException:
            with self._changed:
                self._in_flight.difference_update(batch)
                for other in batch[1:]:
                    self._noted[other] = None
                self._changed.notify_all()
            raise
        now = self._ctx.now()
        with self._changed:
            for alert in alerts:
                self._read[alert.id] = (alert, now)
            self._in_flight.difference_update(batch)
            self._changed.notify_all()
        return self._taken(alert_id)

    def _take(self, alert_id: str) -> list[str] | None:
        """The ids to read now, `alert_id` first; None when it was read (or is being read) already."""
        with self._changed:
            self._changed.wait_for(lambda: alert_id not in self._in_flight, timeout=_WAIT)
            self._forget_stale()
            if alert_id in self._read or alert_id in self._in_flight:
                return None
            self._noted.pop(alert_id, None)
            batch = [alert_id]
            while self._noted and len(batch) < BATCH:
                other, _ = self._noted.popitem(last=False)
                if other not in self._in_flight and other not in self._read:
                    batch.append(other)
            self._in_flight.update(batch)
            return batch

    def _taken(self, alert_id: str) -> Alert:
        with self._changed:
            found = self._read.pop(alert_id, None)
        if found is not None:
            return found[0]
        return self._ctx.defender.get_alert(alert_id)  # not listed: gone, or never there

    def _forget_stale(self) -> None:
        oldest = self._ctx.now() - self._ctx.clock.real(_KEEP)
        for alert_id in [i for i, (_, at) in self._read.items() if at < oldest]:
            del self._read[alert_id]
