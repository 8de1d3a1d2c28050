"""Access tokens for Defender's APIs through azure-identity, cached and refreshable on a 401: one
app registration, one provider per audience (the MDE API's, Microsoft Graph's).

The provider takes any azure-core `TokenCredential` (client secret today; certificate or managed
identity credentials plug in unchanged) or, better, a factory of them: after a 401 a fresh
credential is built, so MSAL's own cache cannot hand the rejected token back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import AzureAuthorityHosts, ClientSecretCredential
from pydantic import SecretStr

from joedefender.adapters._microsoft.errors import DefenderAuthError, DefenderTransportError
from joedefender.adapters._trust import requests_verify

logger = logging.getLogger(__name__)

DEFENDER_SCOPE = "https://api.securitycenter.microsoft.com/.default"

# Hosts MSAL knows; any other authority (an emulator, a private STS) skips instance discovery.
_KNOWN_AUTHORITY_HOSTS = frozenset(
    {
        AzureAuthorityHosts.AZURE_PUBLIC_CLOUD,
        AzureAuthorityHosts.AZURE_GOVERNMENT,
        AzureAuthorityHosts.AZURE_CHINA,
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.partner.microsoftonline.cn",
        "login.usgovcloudapi.net",
    }
)
_TOKEN_CONNECT_TIMEOUT = 10
_TOKEN_READ_TIMEOUT = 30
_MAX_REFRESH_MARGIN = 300.0
_MAX_MESSAGE = 500

CredentialFactory = Callable[[], TokenCredential]


def is_known_authority(authority_host: str) -> bool:
    host = urlsplit(authority_host if "//" in authority_host else f"//{authority_host}").hostname
    return (host or "").lower() in _KNOWN_AUTHORITY_HOSTS


def build_credential(
    tenant_id: str,
    client_id: str,
    client_secret: SecretStr,
    *,
    authority_host: str,
    ca_bundle: Path | None = None,
) -> ClientSecretCredential:
    """A client-secret credential with bounded timeouts, and the CA bundle when one is given."""
    transport_options: dict[str, object] = {
        "connection_timeout": _TOKEN_CONNECT_TIMEOUT,
        "read_timeout": _TOKEN_READ_TIMEOUT,
    }
    if ca_bundle is not None:  # the bundle adds to the public roots, it does not replace them
        transport_options["connection_verify"] = requests_verify(ca_bundle)
    return ClientSecretCredential(
        tenant_id,
        client_id,
        client_secret.get_secret_value(),
        authority=authority_host,
        disable_instance_discovery=not is_known_authority(authority_host),
        transport=RequestsTransport(**transport_options),
    )


class TokenProvider:
    """Thread-safe bearer tokens for one scope, reused until shortly before they expire."""

    def __init__(
        self,
        credential: TokenCredential | CredentialFactory,
        *,
        scope: str = DEFENDER_SCOPE,
        redact: Sequence[SecretStr] = (),  # secrets to blank out of the token endpoint's messages
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(credential, TokenCredential):
            self._factory: CredentialFactory | None = None
            self._credential: TokenCredential | None = credential
        else:
            self._factory = credential
            self._credential = None
        self._scope = scope
        self._redact = tuple(secret for secret in redact if secret.get_secret_value())
        self._clock = clock
        self._token: AccessToken | None = None
        self._refresh_at = 0.0
        self._lock = threading.Lock()
        self.requests = 0  # tokens obtained from the credential, for logs and tests

    def __repr__(self) -> str:
        return f"TokenProvider(scope={self._scope!r}, cached={self._token is not None})"

    def token(self) -> str:
        """A bearer token valid for a while yet; raises DefenderAuthError when none can be had."""
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._token = self._fetch()
                now = self._clock()
                margin = min(_MAX_REFRESH_MARGIN, max(0.0, (self._token.expires_on - now) / 2))
                self._refresh_at = self._token.expires_on - margin
            return self._token.token

    def invalidate(self, rejected: str | None = None) -> None:
        """Forget the cached token (Defender answered 401 with it).

        With `rejected` given, only that token is dropped: when many threads see the same 401,
        the first one refreshes and the others reuse its new token.
        """
        with self._lock:
            if self._token is None or (rejected is not None and rejected != self._token.token):
                return
            self._token = None
            if self._factory is not None:
                self._close_credential()

    def close(self) -> None:
        with self._lock:
            self._token = None
            if self._factory is not None:
                self._close_credential()

    def _fetch(self) -> AccessToken:
        if self._credential is None:
            assert self._factory is not None
            self._credential = self._factory()
        try:
            token = self._credential.get_token(self._scope)
        except ClientAuthenticationError as exc:
            raise DefenderAuthError(
                f"the token request was refused: {self._safe(exc.message)}", operation="token"
            ) from None
        except AzureError as exc:
            raise DefenderTransportError(
                f"the token endpoint could not be reached: {self._safe(exc.message)}", operation="token"
            ) from None
        self.requests += 1
        logger.debug("obtained a token for %s expiring at %s", self._scope, token.expires_on)
        return token

    def _close_credential(self) -> None:
        credential, self._credential = self._credential, None
        close = getattr(credential, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # closing is best effort; a failure must not hide the refresh
                logger.debug("closing the old credential failed", exc_info=True)

    def _safe(self, message: object) -> str:
        text = str(message or "").strip()
        for secret in self._redact:
            text = text.replace(secret.get_secret_value(), "***")
        return text[:_MAX_MESSAGE] or "no details given"
