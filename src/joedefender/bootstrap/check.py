"""`joedefender check`: are the settings, the credentials and the permissions what the connector
needs? Here in bootstrap, which builds the clients it tries, so no host touches an adapter.

Each Defender permission is tried with one harmless call where one exists; the rest are read from
the token's `roles` claim (Defender puts an application's permissions there). When the connector
uses Microsoft Graph (`AlertSource=graph`, or verdicts on incidents), so are the Graph permissions
it needs, with a Graph token: Graph's 403 names no permission, so the check says which is missing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from joedefender.adapters._microsoft.errors import DefenderError, ForbiddenError, NotFoundError
from joedefender.adapters.joe.client import JoeSandboxClient
from joedefender.adapters.joe.errors import JoeSandboxError
from joedefender.bootstrap.clients import defender_client, graph_client, sandbox_client, system_chooser, token_provider
from joedefender.domain.platforms import Platform
from joedefender.settings import Settings

_NO_MACHINE = "0" * 40
_NO_ALERT = "da000000000000000000_0"  # the MDE id format; no alert has it
_NO_INCIDENT = "0"
_GRANT = "grant it as an application permission of Microsoft Graph and give admin consent"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def token_roles(token: str) -> set[str]:
    """The `roles` claim of a JWT access token (read, not verified: Defender verifies it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return set()
    roles = claims.get("roles") if isinstance(claims, dict) else None
    return {str(r) for r in roles} if isinstance(roles, list) else set()


def _probe(
    name: str, call: Callable[[], object], *, absent_is_ok: bool = False, missing: str | None = None
) -> CheckResult:
    """`missing`: what to say when the call is forbidden (the permission to grant), else the
    service's own message."""
    try:
        call()
    except NotFoundError:
        if absent_is_ok:
            return CheckResult(name, True, "allowed")
        return CheckResult(name, False, "not found")
    except ForbiddenError as exc:
        return CheckResult(name, False, f"forbidden: {missing or exc.message}")
    except DefenderError as exc:
        return CheckResult(name, False, f"{type(exc).__name__}: {exc.message}")
    return CheckResult(name, True, "allowed")


def _granted(roles: set[str], wanted: tuple[str, ...]) -> list[CheckResult]:
    return [
        CheckResult(name, name in roles, "granted" if name in roles else "not granted to the app") for name in wanted
    ]


def graph_checks(settings: Settings, *, time_scale: float = 1.0) -> list[CheckResult]:
    """The Graph permissions the settings need, from the Graph token's roles and harmless calls:
    listing alerts, and a change of an alert (or an incident) that does not exist (answered 404
    when allowed, 403 when not)."""
    wanted: tuple[str, ...] = ("SecurityAlert.ReadWrite.All",) if settings.alert_source == "graph" else ()
    if settings.incident_verdicts:
        wanted += ("SecurityIncident.ReadWrite.All",)
    tokens = token_provider(settings, scope=settings.graph_scope)
    try:
        roles = token_roles(tokens.token())
    except DefenderError as exc:
        return [CheckResult("Graph token", False, exc.message)]
    finally:
        tokens.close()
    results = [CheckResult("Graph token", True, f"granted roles: {', '.join(sorted(roles)) or 'none'}")]
    if roles:
        results += _granted(roles, wanted)
    with graph_client(settings, time_scale=time_scale) as graph:
        since = datetime.now(UTC) - timedelta(minutes=5)
        probes: list[tuple[str, str, Callable[[], object]]] = []
        if "SecurityAlert.ReadWrite.All" in wanted:
            probes += [
                ("SecurityAlert.Read.All", "list alerts_v2", lambda: next(graph.list_alerts(since, page_size=1), None)),
                ("SecurityAlert.ReadWrite.All", "update an alert", lambda: graph.update_alert(_NO_ALERT, status="new")),
            ]
        if "SecurityIncident.ReadWrite.All" in wanted:
            probes.append(
                ("SecurityIncident.ReadWrite.All", "tag an incident", lambda: graph.set_incident_tags(_NO_INCIDENT, []))
            )
        for permission, what, call in probes:
            missing = f"{permission} is missing: {_GRANT}"
            results.append(_probe(f"{permission} ({what})", call, absent_is_ok=True, missing=missing))
    return results


def check(settings: Settings, *, time_scale: float = 1.0) -> list[CheckResult]:
    """Get a token, try each permission with one harmless call where one exists (the rest are read
    from the token's `roles` claim), check Joe Sandbox, its quota and the systems per platform."""
    results = [CheckResult("settings", True, "valid")]
    tokens = token_provider(settings)
    try:
        roles = token_roles(tokens.token())
        results.append(CheckResult("Entra token", True, f"granted roles: {', '.join(sorted(roles)) or 'none'}"))
    except DefenderError as exc:
        results.append(CheckResult("Entra token", False, exc.message))
        roles = set()
    finally:
        tokens.close()
    mde_alerts = settings.alert_source == "mde"  # with Graph as the source, alerts need no MDE permission
    if roles:
        results += _granted(
            roles, ("Alert.ReadWrite.All", "Machine.LiveResponse") if mde_alerts else ("Machine.LiveResponse",)
        )
    with defender_client(settings, time_scale=time_scale) as defender:
        since = datetime.now(UTC) - timedelta(minutes=5)
        if mde_alerts:
            results.append(
                _probe("Alert.Read.All (list alerts)", lambda: next(defender.list_alerts(since, page_size=1), None))
            )
        results.append(
            _probe("Machine.Read.All (read a machine)", lambda: defender.get_machine(_NO_MACHINE), absent_is_ok=True)
        )
        results.append(_probe("Library.Manage (list the library)", defender.list_library_files))
    if settings.uses_graph:
        results += graph_checks(settings, time_scale=time_scale)
    with sandbox_client(settings) as joe:
        try:
            online = joe.is_online()
            results.append(CheckResult("Joe Sandbox online", online, "online" if online else "offline"))
            account = joe.account()
            quota = (
                f"plan {account.type}; submissions left today: {account.daily_remaining}, "
                f"this month: {account.monthly_remaining}"
            )
            results.append(CheckResult("Joe Sandbox quota", account.daily_remaining != 0, quota))
        except JoeSandboxError as exc:
            results.append(CheckResult("Joe Sandbox", False, f"{type(exc).__name__}: {exc}"))
        results += _systems(joe, settings)
    return results


def _systems(joe: JoeSandboxClient, settings: Settings) -> list[CheckResult]:
    """The systems each device platform's samples would be analysed on."""
    chooser = system_chooser(joe, settings)
    results = []
    for platform in Platform:
        name = f"Joe Sandbox systems for {platform.label} samples"
        try:
            results.append(CheckResult(name, True, chooser.choose(platform).describe()))
        except JoeSandboxError as exc:
            results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}"))
    return results
