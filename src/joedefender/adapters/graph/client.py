"""The Microsoft Graph security API operations the connector uses (alerts_v2 and incidents), over
the retrying, rate-limited transport the Defender client uses too.

One client may be shared by all threads of a process: the limiter and the token cache are locked
and httpx clients are thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping

from joedefender.adapters._microsoft.client import DEFAULT_RETRY, ApiClient
from joedefender.adapters._microsoft.limiter import Rate
from joedefender.adapters.graph._alerts import AlertCalls
from joedefender.adapters.graph._calls import FAMILY
from joedefender.adapters.graph._incidents import IncidentCalls

__all__ = ["DEFAULT_RETRY", "FAMILY", "GRAPH_RATES", "GraphClient"]

# GD includes/throttling-security-detections-incidents.md: 150 requests a minute per app per tenant
# (whether incidents count in it is not said: they do here, the safe side).
GRAPH_RATES: Mapping[str, Rate] = {FAMILY: Rate(150)}


class GraphClient(ApiClient, AlertCalls, IncidentCalls):
    """alerts_v2 and incidents of one tenant through Microsoft Graph.

    Built as the Defender client is: the endpoint (`GraphApiBaseURL`, without `/v1.0`), a
    credential (a token provider for the Graph audience) and options;
    `joedefender.bootstrap.graph_client` builds one from the settings.
    """

    RATES = GRAPH_RATES
    LOG_NAME = "joedefender.adapters.graph"
