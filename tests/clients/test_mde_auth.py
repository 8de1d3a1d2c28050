"""The token provider over fake credentials: caching, refresh before expiry, invalidation, redaction."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from pydantic import SecretStr

from joedefender.adapters._microsoft.errors import DefenderTransportError
from joedefender.adapters._microsoft.tokens import DEFENDER_SCOPE, is_known_authority
from joedefender.adapters.defender import DefenderAuthError, TokenProvider


class FakeCredential:
    """Hands out numbered tokens valid `lifetime` seconds from the fake now."""

    issued = 0

    def __init__(self, clock: list[float], lifetime: float = 3600.0, fail: Exception | None = None) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.fail = fail
        self.scopes: list[tuple[str, ...]] = []
        self.closed = False

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        if self.fail is not None:
            raise self.fail
        self.scopes.append(scopes)
        FakeCredential.issued += 1
        return AccessToken(f"token-{FakeCredential.issued}", int(self.clock[0] + self.lifetime))

    def close(self) -> None:
        self.closed = True


def test_tokens_are_reused_until_shortly_before_expiry():
    now = [1_000_000.0]
    credential = FakeCredential(now)
    provider = TokenProvider(credential, clock=lambda: now[0])
    first = provider.token()
    now[0] += 3000  # ten minutes before expiry: still fine
    assert provider.token() == first
    now[0] += 400  # within five minutes of expiry: refreshed
    assert provider.token() != first
    assert credential.scopes == [(DEFENDER_SCOPE,), (DEFENDER_SCOPE,)]
    assert provider.requests == 2


def test_invalidate_drops_only_the_rejected_token_and_rebuilds_the_credential():
    now = [1_000_000.0]
    built: list[FakeCredential] = []

    def factory() -> FakeCredential:
        built.append(FakeCredential(now))
        return built[-1]

    provider = TokenProvider(factory, clock=lambda: now[0])
    stale = provider.token()
    provider.invalidate(stale)
    fresh = provider.token()
    assert fresh != stale
    assert len(built) == 2
    assert built[0].closed
    provider.invalidate(stale)  # a second thread reporting the same old token changes nothing
    assert provider.token() == fresh
    assert len(built) == 2


def test_a_refused_token_request_is_an_auth_error_without_the_secret():
    secret = SecretStr("s3cr3t-VALUE")
    refusal = ClientAuthenticationError("AADSTS7000215: Invalid client secret provided: s3cr3t-VALUE")
    provider = TokenProvider(FakeCredential([0.0], fail=refusal), redact=(secret,))
    with pytest.raises(DefenderAuthError) as caught:
        provider.token()
    assert "AADSTS7000215" in str(caught.value)
    assert "s3cr3t-VALUE" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_an_unreachable_token_endpoint_is_a_transport_error():
    provider = TokenProvider(FakeCredential([0.0], fail=ServiceRequestError("connection refused")))
    with pytest.raises(DefenderTransportError, match="token endpoint"):
        provider.token()


@pytest.mark.parametrize(
    ("authority", "known"),
    [
        ("https://login.microsoftonline.com", True),
        ("login.microsoftonline.us", True),
        ("https://LOGIN.CHINACLOUDAPI.CN/", True),
        ("https://127.0.0.1:8443", False),
        ("https://sts.contoso.example", False),
    ],
)
def test_instance_discovery_only_for_microsoft_hosts(authority, known):
    assert is_known_authority(authority) is known
