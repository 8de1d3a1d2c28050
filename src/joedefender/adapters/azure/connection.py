"""How the store reaches its storage account: a connection string, or a managed identity.

The settings are the Functions host's own (`AzureWebJobsStorage`, or its identity form
`AzureWebJobsStorage__accountName`, `__tableServiceUri`, `__queueServiceUri`, `__credential`,
`__clientId`), so the app and its store share one storage account and one configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.queue import QueueServiceClient

DEFAULT_NAME = "AzureWebJobsStorage"


@dataclass(frozen=True)
class AzureStorageConnection:
    """Either `connection_string`, or the service URIs and an Entra ID credential."""

    connection_string: str | None = field(default=None, repr=False)  # it may carry the account key
    table_service_uri: str | None = None
    queue_service_uri: str | None = None
    credential: str | None = None  # "managedidentity", or None for DefaultAzureCredential
    client_id: str | None = None  # of a user-assigned managed identity

    def __post_init__(self) -> None:
        if self.connection_string is None and not (self.table_service_uri and self.queue_service_uri):
            raise ValueError("an Azure Storage connection needs a connection string or both service URIs")

    @classmethod
    def from_settings(cls, values: Mapping[str, str], name: str = DEFAULT_NAME) -> AzureStorageConnection:
        """From `name` (a connection string) or `name__accountName` / `name__tableServiceUri` +
        `name__queueServiceUri` (identity), as the Functions host reads its storage connection."""

        def setting(suffix: str) -> str | None:
            value = values.get(f"{name}__{suffix}", "").strip()
            return value or None

        connection_string = values.get(name, "").strip()
        if connection_string:
            return cls(connection_string=connection_string)
        account = setting("accountName")
        tables = setting("tableServiceUri") or (account and f"https://{account}.table.core.windows.net")
        queues = setting("queueServiceUri") or (account and f"https://{account}.queue.core.windows.net")
        if not tables or not queues:
            raise ValueError(
                f"no Azure Storage connection: set {name} (a connection string) or {name}__accountName "
                f"(or both {name}__tableServiceUri and {name}__queueServiceUri) for a managed identity"
            )
        credential = setting("credential")
        if credential is not None and credential.lower() != "managedidentity":
            raise ValueError(f"{name}__credential: only 'managedidentity' is supported, not {credential!r}")
        return cls(
            table_service_uri=tables,
            queue_service_uri=queues,
            credential=credential and credential.lower(),
            client_id=setting("clientId"),
        )

    def describe(self) -> str:
        """Where the store lives, without any secret: for logs and `status`."""
        if self.connection_string is not None:
            parts = dict(
                part.split("=", 1) for part in self.connection_string.split(";") if "=" in part and part.strip()
            )
            if parts.get("UseDevelopmentStorage", "").lower() == "true":
                return "the local storage emulator"
            return f"storage account {parts.get('AccountName', '(unnamed)')}"
        return f"{self.table_service_uri} (Entra ID)"

    def _token_credential(self) -> Any:
        if self.credential == "managedidentity":
            return (
                ManagedIdentityCredential(client_id=self.client_id) if self.client_id else ManagedIdentityCredential()
            )
        return DefaultAzureCredential(managed_identity_client_id=self.client_id)

    def services(self) -> tuple[TableServiceClient, QueueServiceClient]:
        if self.connection_string is not None:
            tables = TableServiceClient.from_connection_string(self.connection_string)
            queues = QueueServiceClient.from_connection_string(self.connection_string)
            table_url, queue_url = tables.url, queues.url
            tables.close()
            queues.close()
            return (
                TableServiceClient.from_connection_string(self.connection_string, **http_options(table_url)),
                QueueServiceClient.from_connection_string(self.connection_string, **http_options(queue_url)),
            )
        assert self.table_service_uri is not None
        assert self.queue_service_uri is not None
        credential = self._token_credential()
        return (
            TableServiceClient(self.table_service_uri, credential=credential, **http_options(self.table_service_uri)),
            QueueServiceClient(self.queue_service_uri, credential=credential, **http_options(self.queue_service_uri)),
        )


def http_options(url: str) -> dict[str, Any]:
    """The Azure SDK client options for the service at `url`: its proxy and CA bundle taken from
    the environment once, here, as requests would take them (HTTPS_PROXY, NO_PROXY,
    REQUESTS_CA_BUNDLE), instead of for every request: looking them up scans the environment
    several times a request, a fifth of an instance's CPU with a Functions app's settings in it.
    Nor does a ~/.netrc replace the requests' own authorization."""
    session = requests.Session()
    session.trust_env = False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    options: dict[str, Any] = {
        "transport": RequestsTransport(session=session, session_owner=True, connection_verify=bundle or True)
    }
    proxies = requests.utils.get_environ_proxies(url)
    if proxies:
        options["proxies"] = dict(proxies)
    return options
