"""The Defender for Endpoint operations the connector uses, over the retrying, rate-limited transport.

One client may be shared by all threads of a process: the limiter and the token cache are locked
and httpx clients are thread-safe.
"""

from __future__ import annotations

from joedefender.adapters._microsoft.client import DEFAULT_RETRY, ApiClient
from joedefender.adapters.defender._alerts import AlertCalls
from joedefender.adapters.defender._calls import odata_string
from joedefender.adapters.defender._indicators import IndicatorCalls
from joedefender.adapters.defender._machines import MachineCalls
from joedefender.adapters.defender.limiter import DOCUMENTED_RATES

__all__ = ["DEFAULT_RETRY", "DefenderClient", "odata_string"]


class DefenderClient(ApiClient, AlertCalls, MachineCalls, IndicatorCalls):
    """Alerts, machines, live response, library and indicators of one Defender tenant.

    Built as Azure SDK clients are: the endpoint, a credential (the token provider) and options;
    `joedefender.bootstrap.defender_client` builds one from the settings.
    """

    RATES = DOCUMENTED_RATES
    LOG_NAME = "joedefender.adapters.defender"

    # --- alerts -------------------------------------------------------------------------------------
