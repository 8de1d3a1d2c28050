"""The Defender for Endpoint API's endpoint families and their documented quotas (mde-api.md
section 7); the limiter that keeps them is the shared one (`joedefender.adapters._microsoft.limiter`)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from joedefender.adapters._microsoft.limiter import Limiter, Rate, RateLimiter, SharedHolds

__all__ = ["DOCUMENTED_RATES", "Family", "Limiter", "Rate", "RateLimiter", "SharedHolds"]


class Family(StrEnum):
    """Endpoints that share one documented quota."""

    ALERTS = "alerts"
    ALERTS_BATCH_UPDATE = "alerts.batchUpdate"
    MACHINES = "machines"
    MACHINE_ACTIONS = "machineactions"
    LIVE_RESPONSE = "runliveresponse"
    DOWNLOAD_LINK = "liveresponse.downloadLink"
    LIBRARY = "libraryfiles"
    INDICATORS = "indicators"
    INDICATORS_IMPORT = "indicators.import"
    INDICATORS_BATCH_DELETE = "indicators.batchDelete"


DOCUMENTED_RATES: Mapping[str, Rate] = {
    Family.ALERTS: Rate(100, 1500),
    Family.ALERTS_BATCH_UPDATE: Rate(10, 500),
    Family.MACHINES: Rate(100, 1500),
    Family.MACHINE_ACTIONS: Rate(100, 1500),
    Family.LIVE_RESPONSE: Rate(10),
    Family.DOWNLOAD_LINK: Rate(100, 1500),
    Family.LIBRARY: Rate(100, 1500),
    Family.INDICATORS: Rate(100, 1500),
    Family.INDICATORS_IMPORT: Rate(30),
    Family.INDICATORS_BATCH_DELETE: Rate(30, 1500),
}
