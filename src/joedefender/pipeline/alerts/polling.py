"""One poll of Defender: alerts updated since the last poll, over a moving lastUpdateTime window.

The watermark is kept in the store, so a restart continues where the last poll ended; the window
overlaps the previous one a little because Defender's clocks and ours differ, and intake makes a
repeated alert a no-op. Alerts the filters would skip are not even recorded, to keep the store
to what the connector works on. Hosts decide when to poll (a thread, a timer trigger).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from joedefender.domain.alerts import Alert
from joedefender.pipeline.alerts.intake import (
    LISTED_PER_COMMIT,
    Intake,
    InvalidAlertError,
    validate_alert_id,
    validate_machine_id,
)
from joedefender.pipeline.context import Context
from joedefender.pipeline.records import upsert

logger = logging.getLogger("joedefender.poller")
_OVERLAP = timedelta(minutes=2)
_WATERMARK = "poller"


def poll_once(ctx: Context, intake: Intake, *, now: datetime, lookback: timedelta) -> int:
    """Take in the alerts updated in [watermark - overlap, now); returns how many were new.

    `now` is the poller's idea of Defender's time.
    """
    meta = ctx.store.get("meta", _WATERMARK)
    since = datetime.fromisoformat(meta.data["since"]) - _OVERLAP if meta is not None else now - lookback
    new = 0
    listed: list[Alert] = []
    for alert in ctx.defender.list_alerts(since, now):
        if ctx.config.filters.rejection(alert) is not None:
            continue
        try:
            validate_alert_id(alert.id)
            validate_machine_id(alert.machine_id)
        except InvalidAlertError as exc:
            logger.warning("poller: skipping an alert Defender returned: %s", exc)
            continue
        listed.append(alert)
        if len(listed) == LISTED_PER_COMMIT:
            new += intake.receive_listed(listed)
            listed = []
    new += intake.receive_listed(listed)
    upsert(ctx.store, "meta", _WATERMARK, lambda _: {"since": now.isoformat()})
    if new:
        logger.info("poller: %d new alert(s)", new)
    return new
