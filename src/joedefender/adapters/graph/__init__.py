"""The Graph adapter: Microsoft Graph's security API (alerts_v2, incidents) for Defender XDR, on
the transport, tokens and limiter the Defender adapter uses too (`adapters/_microsoft`), and the
core's ports over it: `GraphAlertSource` (alerts through Graph, machines and live response through
the MDE adapter it is given) and `GraphIncidents`."""

from joedefender.adapters.graph.client import FAMILY, GRAPH_RATES, GraphClient
from joedefender.adapters.graph.models import Alert, Comment, Evidence, FileDetails, Incident
from joedefender.adapters.graph.port import GraphAlertSource, GraphIncidents

__all__ = [
    "FAMILY",
    "GRAPH_RATES",
    "Alert",
    "Comment",
    "Evidence",
    "FileDetails",
    "GraphAlertSource",
    "GraphClient",
    "GraphIncidents",
    "Incident",
]
