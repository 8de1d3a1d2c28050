"""The Graph emulator: its own TLS server for `/v1.0/security/...`, on the same tenant as the MDE
emulator (its alerts, comments and machines) and the same Entra token issuer (one app
registration, the Graph audience)."""

from __future__ import annotations

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.graph.app import GraphApi
from joedefender_emulators.graph.common import render_error
from joedefender_emulators.graph.incidents import IncidentStore
from joedefender_emulators.graph.inspection import Inspection
from joedefender_emulators.http import EmulatorServer, FaultInjector, Router, Served
from joedefender_emulators.mde.state import TenantState
from joedefender_emulators.scenario import Scenario
from joedefender_emulators.tls import EmulatorCertificates
from joedefender_emulators.tokens import TokenService


class GraphEmulator(Served):
    """Serves the scenario's Graph security API over https on loopback; a context manager."""

    def __init__(
        self,
        scenario: Scenario,
        clock: EmulatedClock,
        certificates: EmulatorCertificates,
        tenant: TenantState,
        tokens: TokenService,
        port: int = 0,
    ) -> None:
        self.scenario = scenario
        self.tenant = tenant
        with tenant.lock:
            self.incidents = IncidentStore(
                scenario.graph.incidents, tenant.alerts.stored(), scenario.defender.tenant_id, clock.now()
            )
        self.api = GraphApi(tenant, self.incidents, tokens, scenario.graph)
        router = Router(case_insensitive=True)
        self.api.register(router)
        Inspection(tenant, self.api, self.incidents).register(router)
        self.server = EmulatorServer(
            "graph",
            router,
            render_error,
            clock,
            FaultInjector("graph", scenario.faults, seed=scenario.seed),
            port=port,
            ssl_context=certificates.server_context(),
        )
