"""Entra ID's token issuer, shared by the emulated APIs: signed JWT access tokens for one app
registration and several audiences (the MDE API, Microsoft Graph), and their verification."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.scenario import DefenderScenario

# The identifiers Entra knows the WindowsDefenderATP application by (mde-api.md section 1).
MDE_RESOURCES = (
    "https://api.securitycenter.microsoft.com",
    "https://api.security.microsoft.com",
    "https://securitycenter.onmicrosoft.com/windowsatpservice",
)
# Microsoft Graph: the global service and the US Government L4 and L5 (DoD) clouds, each its own
# audience. One app registration asks for either; the token carries that API's roles only.
GRAPH_RESOURCES = (
    "https://graph.microsoft.com",
    "https://graph.microsoft.us",
    "https://dod-graph.microsoft.us",
)
RESOURCES = MDE_RESOURCES + GRAPH_RESOURCES


@dataclass(frozen=True)
class Caller:
    """Who is calling, from a verified token."""

    app_id: str
    roles: frozenset[str]

    @property
    def sees_all_indicators(self) -> bool:
        return "Ti.ReadWrite.All" in self.roles


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenRejected(Exception):
    """The bearer token is missing, malformed, expired, revoked or for another API; each API
    answers it in its own error format."""


class TokenService:
    """Issues and checks HS256 JWTs with a key made fresh for each run; can revoke them all.

    One issuer for both APIs (one app registration, two audiences): a token's `roles` are the
    WindowsDefenderATP permissions for an MDE audience and `graph_roles` for a Graph one.
    """

    def __init__(self, tenant: DefenderScenario, clock: EmulatedClock, graph_roles: Sequence[str] = ()) -> None:
        self._tenant = tenant
        self._graph_roles = tuple(graph_roles)
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        # token id -> when it runs out, on the emulated timeline (the wall clock is only shown)
        self._live: dict[str, float] = {}

    def issue(self, audience: str) -> tuple[str, float]:
        """A token for the scenario's app; returns it with its lifetime in emulated seconds."""
        elapsed = self._clock.elapsed()
        now = int(self._clock.at(elapsed).timestamp())
        lifetime = self._tenant.token_lifetime_seconds
        token_id = _b64(secrets.token_bytes(16))
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{self._tenant.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": int(self._clock.at(elapsed + lifetime).timestamp()),
            "aio": _b64(secrets.token_bytes(24)),
            "appid": self._tenant.client_id,
            "appidacr": "1",
            "idp": f"https://sts.windows.net/{self._tenant.tenant_id}/",
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, self._tenant.client_id)),
            "roles": list(self._graph_roles if audience in GRAPH_RESOURCES else self._tenant.permissions),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, self._tenant.client_id)),
            "tid": self._tenant.tenant_id,
            "uti": token_id,
            "ver": "1.0",
        }
        header = {"typ": "JWT", "alg": "HS256"}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()
        with self._lock:
            self._live[token_id] = elapsed + lifetime
        return f"{signing_input}.{_b64(signature)}", lifetime

    def revoke_all(self) -> int:
        with self._lock:
            count = len(self._live)
            self._live.clear()
        return count

    def verify(self, authorization: str | None, audiences: Sequence[str]) -> Caller:
        """The caller behind an `Authorization: Bearer` header whose token is live and was issued
        for one of `audiences` in this tenant; TokenRejected saying why not."""
        if not authorization:
            raise TokenRejected("Authorization header is missing.")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejected("Authorization header must be 'Bearer <access token>'.")
        claims = self._verify(token.strip())
        if claims.get("nbf", 0) > self._clock.now().timestamp() + 300:
            raise TokenRejected("The access token is not yet valid.")
        runs_out = self._runs_out(claims.get("uti"))
        if runs_out is None:
            raise TokenRejected("The access token has been revoked.")
        if runs_out <= self._clock.elapsed():
            raise TokenRejected("The access token has expired.")
        if claims.get("aud") not in audiences or claims.get("tid") != self._tenant.tenant_id:
            raise TokenRejected("The access token was not issued for this API and tenant.")
        roles = claims.get("roles")
        return Caller(str(claims.get("appid")), frozenset(roles if isinstance(roles, list) else []))

    def _runs_out(self, token_id: Any) -> float | None:
        """When a live (not revoked) token expires on the timeline; None if it is not live."""
        with self._lock:
            return self._live.get(token_id) if isinstance(token_id, str) else None

    def _verify(self, token: str) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenRejected("The access token is malformed.")
        expected = hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode("ascii", "replace"), hashlib.sha256)
        try:
            signature = _unb64(parts[2])
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise TokenRejected("The access token is malformed.") from None
        if not hmac.compare_digest(signature, expected.digest()) or not isinstance(claims, dict):
            raise TokenRejected("The access token signature is invalid.")
        return claims
