"""Entra ID (Azure AD) as the MDE API sees it: the client-credentials token endpoints, OpenID
discovery documents and the permission check behind every API call (the tokens themselves are
`joedefender_emulators.tokens`, shared with the Graph emulator)."""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.http import ApiError, Request, Response, json_response
from joedefender_emulators.mde.common import origin
from joedefender_emulators.scenario import DefenderScenario
from joedefender_emulators.tokens import MDE_RESOURCES, RESOURCES, Caller, TokenRejected, TokenService

__all__ = ["REQUIRED_ROLES", "Caller", "EntraEndpoints", "TokenService", "authenticate", "authorize"]

_RESOURCES = RESOURCES
_OIDC_SCOPES = ("openid", "profile", "offline_access", "email")

# Which roles satisfy each endpoint: any one of them (ReadWrite implies Read).
_ALERT_READ = ("Alert.Read.All", "Alert.ReadWrite.All")
_ALERT_WRITE = ("Alert.ReadWrite.All",)
_MACHINE_READ = ("Machine.Read.All", "Machine.ReadWrite.All")
_CANCEL = (
    "Machine.LiveResponse",
    "Machine.CollectForensics",
    "Machine.Isolate",
    "Machine.RestrictExecution",
    "Machine.Scan",
    "Machine.Offboard",
    "Machine.StopAndQuarantine",
)
_LIBRARY = ("Library.Manage",)
_INDICATORS = ("Ti.ReadWrite", "Ti.ReadWrite.All")

REQUIRED_ROLES: Mapping[str, tuple[str, ...]] = {
    "alerts.list": _ALERT_READ,
    "alerts.get": _ALERT_READ,
    "alerts.update": _ALERT_WRITE,
    "alerts.batchUpdate": _ALERT_WRITE,
    "machines.get": _MACHINE_READ,
    "machines.list": _MACHINE_READ,
    "machineactions.list": _MACHINE_READ,
    "machineactions.get": _MACHINE_READ,
    "machineactions.cancel": _CANCEL,
    "liveresponse.run": ("Machine.LiveResponse",),
    "liveresponse.downloadLink": _MACHINE_READ,
    "libraryfiles.upload": _LIBRARY,
    "libraryfiles.list": _LIBRARY,
    "libraryfiles.delete": _LIBRARY,
    "indicators.submit": _INDICATORS,
    "indicators.import": _INDICATORS,
    "indicators.list": _INDICATORS,
    "indicators.delete": _INDICATORS,
    "indicators.batchDelete": _INDICATORS,
}


def authorize(caller: Caller, endpoint: str) -> None:
    """403 `Forbidden` naming the missing permission when no granted role covers the endpoint."""
    needed = REQUIRED_ROLES[endpoint]
    if caller.roles.intersection(needed):
        return
    wanted = needed[0] if len(needed) == 1 else f"one of {', '.join(needed)}"
    raise ApiError(
        403,
        "Forbidden",
        f"The application lacks the permission this operation requires: {wanted}. "
        "Grant it as an application permission of WindowsDefenderATP and give admin consent.",
    )


def _unauthorized(message: str) -> ApiError:
    return ApiError(
        401,
        "Unauthorized",
        message,
        {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{message}"'},
    )


def authenticate(tokens: TokenService, authorization: str | None) -> Caller:
    """The MDE API's caller behind an `Authorization: Bearer` header, or 401 `Unauthorized`."""
    try:
        return tokens.verify(authorization, MDE_RESOURCES)
    except TokenRejected as exc:
        raise _unauthorized(str(exc)) from None


class _AadError(Exception):
    """An Entra-style error answer: `{"error", "error_description", "error_codes", ...}`."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description


class EntraEndpoints:
    """The token and discovery routes; answers in Entra's own error format, not MDE's."""

    def __init__(self, tenant: DefenderScenario, clock: EmulatedClock, tokens: TokenService) -> None:
        self._tenant = tenant
        self._clock = clock
        self._tokens = tokens

    def token_v1(self, request: Request) -> Response:
        return self._token(request, version=1)

    def token_v2(self, request: Request) -> Response:
        return self._token(request, version=2)

    def openid_v1(self, request: Request) -> Response:
        return self._discovery(request, version=1)

    def openid_v2(self, request: Request) -> Response:
        return self._discovery(request, version=2)

    def _discovery(self, request: Request, version: int) -> Response:
        try:
            tenant = self._check_tenant(request.params["tenant"])
        except _AadError as exc:
            return self._error_response(exc)
        base = f"{origin(request)}/{tenant}"
        suffix = "/v2.0" if version == 2 else ""
        issuer = f"{base}/v2.0" if version == 2 else f"https://sts.windows.net/{tenant}/"
        document = {
            "token_endpoint": f"{base}/oauth2{suffix}/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery{suffix}/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": issuer,
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2{suffix}/authorize",
            "device_authorization_endpoint": f"{base}/oauth2{suffix}/devicecode",
            "end_session_endpoint": f"{base}/oauth2{suffix}/logout",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }
        return json_response(document)

    def _token(self, request: Request, version: int) -> Response:
        try:
            self._check_tenant(request.params["tenant"])
            form = self._form(request)
            client_id, secret = self._client_credentials(request, form)
            grant = form.get("grant_type")
            if not grant:
                raise _missing("grant_type")
            if grant != "client_credentials":
                raise _AadError(
                    400, "unsupported_grant_type", 70003, "AADSTS70003: The app requested an unsupported grant type."
                )
            self._check_client(client_id, secret)
            audience = self._resource(form) if version == 1 else self._scope(form)
        except _AadError as exc:
            return self._error_response(exc)
        token, lifetime = self._tokens.issue(audience)
        # expires_in is read by the client on its own (real) clock: report the emulated lifetime
        # in real seconds, so a client refreshes when the emulated token really runs out.
        expires_in = max(1, round(self._clock.to_real(lifetime)))
        if version == 2:
            return json_response(
                {"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": token}
            )
        now = int(self._clock.now().timestamp())
        return json_response(
            {
                "token_type": "Bearer",
                "expires_in": str(expires_in),
                "ext_expires_in": str(expires_in),
                "expires_on": str(now + expires_in),
                "not_before": str(now),
                "resource": audience,
                "access_token": token,
            }
        )

    def _check_tenant(self, tenant: str) -> str:
        if tenant.lower() != self._tenant.tenant_id.lower():
            raise _AadError(
                400,
                "invalid_request",
                90002,
                f"AADSTS90002: Tenant '{tenant[:64]}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
            )
        return self._tenant.tenant_id

    @staticmethod
    def _form(request: Request) -> dict[str, str]:
        content_type = request.headers.get("Content-Type", "")
        if not content_type.lower().startswith("application/x-www-form-urlencoded"):
            raise _AadError(
                400,
                "invalid_request",
                900144,
                "AADSTS900144: The request body must contain the following parameter: 'grant_type'. "
                "(the body must be application/x-www-form-urlencoded)",
            )
        return {name: values[0].text for name, values in request.form().items() if values}

    @staticmethod
    def _client_credentials(request: Request, form: Mapping[str, str]) -> tuple[str, str]:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = request.headers.get("Authorization", "")
        if basic.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(basic[6:].strip(), validate=True).decode("utf-8")
            except (ValueError, binascii.Error):
                decoded = ""
            user, _, password = decoded.partition(":")
            client_id, secret = client_id or user, secret or password
        if not client_id:
            raise _missing("client_id")
        if not secret:
            raise _AadError(
                401,
                "invalid_client",
                7000218,
                "AADSTS7000218: The request body must contain the following parameter: "
                "'client_assertion' or 'client_secret'.",
            )
        return client_id, secret

    def _check_client(self, client_id: str, secret: str) -> None:
        if client_id.lower() != self._tenant.client_id.lower():
            raise _AadError(
                400,
                "unauthorized_client",
                700016,
                f"AADSTS700016: Application with identifier '{client_id[:64]}' was not found in the directory "
                f"'{self._tenant.tenant_id}'.",
            )
        if not hmac.compare_digest(secret.encode(), self._tenant.client_secret.encode()):
            raise _AadError(
                401,
                "invalid_client",
                7000215,
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{self._tenant.client_id}'.",
            )

    @staticmethod
    def _resource(form: Mapping[str, str]) -> str:
        resource = form.get("resource", "").strip()
        if not resource:
            raise _missing("resource")
        canonical = resource.rstrip("/")
        if canonical not in _RESOURCES:
            raise _AadError(
                400,
                "invalid_resource",
                500011,
                f"AADSTS500011: The resource principal named {resource[:200]} was not found in the tenant.",
            )
        return canonical

    @staticmethod
    def _scope(form: Mapping[str, str]) -> str:
        scope = form.get("scope", "").strip()
        if not scope:
            raise _missing("scope")
        wanted = [part for part in scope.split() if part.lower() not in _OIDC_SCOPES]
        if len(wanted) != 1 or not wanted[0].endswith("/.default"):
            raise _AadError(
                400,
                "invalid_scope",
                1002012,
                f"AADSTS1002012: The provided value for scope {scope[:200]} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
            )
        resource = wanted[0].removesuffix("/.default")
        if resource not in _RESOURCES:
            raise _AadError(
                400,
                "invalid_resource",
                500011,
                f"AADSTS500011: The resource principal named {resource[:200]} was not found in the tenant.",
            )
        return resource

    def _error_response(self, error: _AadError) -> Response:
        moment = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        body = {
            "error": error.error,
            "error_description": f"{error.description}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}"
            f"\r\nTimestamp: {moment}",
            "error_codes": [error.code],
            "timestamp": moment,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={error.code}",
        }
        return json_response(body, error.status)


def _missing(parameter: str) -> _AadError:
    return _AadError(
        400,
        "invalid_request",
        900144,
        f"AADSTS900144: The request body must contain the following parameter: '{parameter}'.",
    )
