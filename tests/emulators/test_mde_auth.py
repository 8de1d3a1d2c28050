"""Entra token endpoints, discovery documents, JWTs, 401/403 on the API, and azure-identity."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from .conftest import CLIENT, SCOPE, SECRET, TENANT, mde_scenario_raw


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert isinstance(claims, dict)
    return claims


def _form(**overrides: str) -> dict[str, str]:
    form = {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET, "scope": SCOPE}
    form.update(overrides)
    return {k: v for k, v in form.items() if v}


@pytest.mark.parametrize(
    ("scope", "audience"),
    [
        (SCOPE, "https://api.securitycenter.microsoft.com"),
        (
            "https://securitycenter.onmicrosoft.com/windowsatpservice/.default",
            "https://securitycenter.onmicrosoft.com/windowsatpservice",
        ),
    ],
)
def test_v2_token_is_a_jwt_with_the_scenario_roles(mde, scope, audience):
    response = mde.http.post(f"/{TENANT}/oauth2/v2.0/token", data=_form(scope=scope))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    header_b64, _, signature = body["access_token"].split(".")
    assert json.loads(base64.urlsafe_b64decode(header_b64 + "=="))["alg"] == "HS256"
    assert signature
    claims = _claims(body["access_token"])
    assert claims["aud"] == audience
    assert claims["tid"] == TENANT
    assert claims["appid"] == CLIENT
    assert set(claims["roles"]) == set(mde.emulator.scenario.defender.permissions)
    now = mde.clock.now().timestamp()
    assert claims["iat"] <= now < claims["exp"]
    assert claims["exp"] - claims["iat"] == 3599
    assert mde.get("/api/alerts", token=body["access_token"]).status_code == 200


def test_v1_token_with_resource(mde):
    form = _form(scope="", resource="https://api.securitycenter.microsoft.com")
    response = mde.http.post(f"/{TENANT}/oauth2/token", data=form)
    assert response.status_code == 200
    body = response.json()
    assert body["resource"] == "https://api.securitycenter.microsoft.com"
    assert body["expires_in"] == "3599"
    assert mde.get("/api/machines", token=body["access_token"]).status_code == 200


def test_openid_configuration_points_at_the_emulator(mde):
    for path, endpoint in [
        (f"/{TENANT}/v2.0/.well-known/openid-configuration", f"/{TENANT}/oauth2/v2.0/token"),
        (f"/{TENANT}/.well-known/openid-configuration", f"/{TENANT}/oauth2/token"),
    ]:
        document = mde.http.get(path).json()
        assert document["token_endpoint"] == mde.url + endpoint
        assert document["authorization_endpoint"].startswith(mde.url + f"/{TENANT}/oauth2/")
        assert TENANT in document["issuer"]
    unknown = mde.http.get("/00000000-0000-0000-0000-00000000dead/v2.0/.well-known/openid-configuration")
    assert unknown.status_code == 400
    assert "AADSTS90002" in unknown.json()["error_description"]


@pytest.mark.parametrize(
    ("path_tenant", "form", "status", "error", "code"),
    [
        (TENANT, _form(client_secret="wrong-secret"), 401, "invalid_client", "AADSTS7000215"),
        (TENANT, _form(client_secret=""), 401, "invalid_client", "AADSTS7000218"),
        (TENANT, _form(client_id="99999999-9999-4999-8999-999999999999"), 400, "unauthorized_client", "AADSTS700016"),
        ("not-our-tenant", _form(), 400, "invalid_request", "AADSTS90002"),
        (TENANT, _form(grant_type="password"), 400, "unsupported_grant_type", "AADSTS70003"),
        (TENANT, _form(grant_type=""), 400, "invalid_request", "AADSTS900144"),
        (TENANT, _form(scope=""), 400, "invalid_request", "AADSTS900144"),
        (TENANT, _form(scope="https://api.securitycenter.microsoft.com"), 400, "invalid_scope", "AADSTS1002012"),
        (TENANT, _form(scope="https://vault.azure.net/.default"), 400, "invalid_resource", "AADSTS500011"),
    ],
)
def test_bad_token_requests_get_aad_errors_without_the_secret(mde, path_tenant, form, status, error, code):
    response = mde.http.post(f"/{path_tenant}/oauth2/v2.0/token", data=form)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["error_description"].startswith(code)
    assert body["error_codes"] == [int(code.removeprefix("AADSTS"))]
    assert "wrong-secret" not in response.text
    assert SECRET not in response.text


def test_v1_needs_a_known_resource(mde):
    missing = mde.http.post(f"/{TENANT}/oauth2/token", data=_form(scope=""))
    assert missing.status_code == 400
    assert "'resource'" in missing.json()["error_description"]
    wrong = mde.http.post(f"/{TENANT}/oauth2/token", data=_form(scope="", resource="https://example.com"))
    assert wrong.json()["error"] == "invalid_resource"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic abc", "Bearer not-a-jwt", "Bearer a.b.c", "Bearer e30.e30.AAAA"],
)
def test_missing_or_invalid_token_is_401(mde, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = mde.http.get("/api/alerts", headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "Unauthorized"
    assert len(error["target"]) == 36


def test_forged_token_is_401(mde):
    header, _, signature = mde.token().split(".")
    claims = _claims(mde.token())
    claims["roles"] = [*claims["roles"], "Extra.Role"]
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = mde.get("/api/alerts", token=f"{header}.{forged_payload}.{signature}")
    assert response.status_code == 401


def test_token_expires_on_the_emulated_clock(make_mde):
    raw = mde_scenario_raw()
    raw["defender"]["token_lifetime_seconds"] = 600
    mde = make_mde(raw)
    token = mde.token()
    assert mde.get("/api/alerts", token=token).status_code == 200
    mde.advance(590)  # the clock also runs in real time: a margin for a busy machine
    assert mde.get("/api/alerts", token=token).status_code == 200
    mde.advance(11)
    expired = mde.get("/api/alerts", token=token)
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]
    assert mde.get("/api/alerts", token=mde.fresh_token()).status_code == 200


def test_expires_in_is_in_real_seconds_under_a_time_scale(make_mde):
    raw = mde_scenario_raw()
    raw["time_scale"] = 0.01
    mde = make_mde(raw)
    body = mde.http.post(f"/{TENANT}/oauth2/v2.0/token", data=_form()).json()
    assert body["expires_in"] == 36  # 3599 emulated seconds take 36 real ones
    claims = _claims(body["access_token"])
    # The claims are on the emulators' wall clock, which runs with the real one: 36 s as well.
    assert claims["exp"] - claims["iat"] in (35, 36)


def test_revoke_invalidates_every_token_issued_so_far(mde):
    first, second = mde.fresh_token(), mde.fresh_token()
    assert mde.http.post("/_emulator/tokens/revoke").json() == {"revoked": 2}
    for token in (first, second):
        response = mde.get("/api/alerts", token=token)
        assert response.status_code == 401
        assert "revoked" in response.json()["error"]["message"]
    assert mde.get("/api/alerts", token=mde.fresh_token()).status_code == 200


def test_missing_permission_is_403_naming_it(make_mde):
    raw = mde_scenario_raw()
    raw["defender"]["permissions"] = ["Alert.Read.All", "Machine.ReadWrite.All", "Ti.ReadWrite"]
    mde = make_mde(raw)
    assert mde.get("/api/alerts").status_code == 200
    assert mde.get("/api/machines").status_code == 200  # ReadWrite implies Read
    assert mde.get("/api/indicators").status_code == 200
    patch = mde.call("PATCH", "/api/alerts/da637000000000000001_1", json={"status": "Resolved"})
    assert patch.status_code == 403
    assert patch.json()["error"]["code"] == "Forbidden"
    assert "Alert.ReadWrite.All" in patch.json()["error"]["message"]
    library = mde.get("/api/libraryfiles")
    assert library.status_code == 403
    assert "Library.Manage" in library.json()["error"]["message"]
    run = mde.run_live_response("a" * 40, [{"type": "GetFile", "params": [{"key": "Path", "value": "C:\\x"}]}])
    assert run.status_code == 403
    assert "Machine.LiveResponse" in run.json()["error"]["message"]
    # Nothing changed behind the refusals.
    alert = mde.inspect("alerts")["value"][1]
    assert alert["id"] == "da637000000000000001_1"
    assert alert["status"] == "New"


def test_azure_identity_gets_a_token_from_the_emulator(mde):
    from azure.core.pipeline.transport import RequestsTransport
    from azure.identity import ClientSecretCredential

    credential = ClientSecretCredential(
        TENANT,
        CLIENT,
        SECRET,
        authority=mde.url,
        disable_instance_discovery=True,
        transport=RequestsTransport(connection_verify=str(mde.certificates.ca_file)),
    )
    token = credential.get_token(SCOPE)
    assert _claims(token.token)["appid"] == CLIENT
    assert token.expires_on > time.time() + 3000
    assert mde.get("/api/alerts", token=token.token).status_code == 200
    assert mde.emulator.server.stats.snapshot()["token"]["statuses"] == {"200": 1}
