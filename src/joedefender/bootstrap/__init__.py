"""The one composition root: builds the connector from settings, every adapter injectable.

Hosts (the standalone service, the CLI, the demo, the Azure Functions app), the tests and the
benchmarks build the connector here and nowhere else, and hosts work through the application
facade it builds (`Connector.app`). The adapters take endpoints, credentials and options (as
Azure SDK clients do) and never read the settings; this is where the two meet: `clients` (the
clients and the alert source), `policies` (the core's configuration), `azure` (the Azure store
and its shared budget), `connector` (the whole), `check` (`joedefender check`).
"""

from joedefender.bootstrap.azure import SHARED_RATES, open_azure_store, outbox_relay, shared_limiter
from joedefender.bootstrap.check import CheckResult, check
from joedefender.bootstrap.clients import (
    StoredHolds,
    alert_source,
    checked_settings,
    defender_client,
    graph_client,
    sandbox_client,
    system_chooser,
    token_provider,
)
from joedefender.bootstrap.connector import (
    Connector,
    open_azure_connector,
    open_azure_status,
    open_connector,
    open_status,
)
from joedefender.bootstrap.policies import indicator_policy, pipeline_config

__all__ = [
    "SHARED_RATES",
    "CheckResult",
    "Connector",
    "StoredHolds",
    "alert_source",
    "check",
    "checked_settings",
    "defender_client",
    "graph_client",
    "indicator_policy",
    "open_azure_connector",
    "open_azure_status",
    "open_azure_store",
    "open_connector",
    "open_status",
    "outbox_relay",
    "pipeline_config",
    "sandbox_client",
    "shared_limiter",
    "system_chooser",
    "token_provider",
]
