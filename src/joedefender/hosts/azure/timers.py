"""The timer triggers: the built-in poller (PollerEnabled), the relay of stranded wake-ups and the
sweeper (the backstop).

Timer triggers run on one instance at a time (the host holds a blob lease per timer), so two
instances never poll the same window at once; intake makes a repeated alert a no-op anyway.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from joedefender.hosts.azure.runtime import Runtime

logger = logging.getLogger("joedefender.functions")

# A work item due (or whose lease ran out) this many nominal seconds ago that nobody took is
# taken as lost: well beyond the host's 10-minute reappearance of a message whose instance died
# mid-step. The store's own relay of lost wake-ups waits less (bootstrap wires it).
SWEEP_GRACE = 30 * 60.0


def poll(runtime: Runtime) -> int:
    """One poll of Defender when the poller is on; how many new alerts it took in."""
    connector = runtime.hosted().connector
    settings = connector.settings
    if not settings.poller_enabled:
        return 0
    return connector.app.poll(datetime.now(UTC), settings.poll_lookback)


def relay_once(runtime: Runtime) -> int:
    """Send the wake-ups a failed send or a crash kept from the queues, and wake the items of
    instances that died holding them; how many were sent."""
    relayed = runtime.hosted().connector.app.relay()
    if relayed:
        logger.warning("relay: sent %d wake-up(s) that were lost or whose work item's holder died", relayed)
    return relayed


def sweep_once(runtime: Runtime) -> list[str]:
    """Relay what was lost, then queue stranded work again; the keys queued."""
    relay_once(runtime)
    return runtime.hosted().connector.app.sweep(SWEEP_GRACE)
