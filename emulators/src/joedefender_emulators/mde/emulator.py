"""The MDE emulator: one TLS server that is both the Entra authority host and the API base."""

from __future__ import annotations

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.http import EmulatorServer, FaultInjector, Router, Served
from joedefender_emulators.mde.app import MdeApi
from joedefender_emulators.mde.auth import EntraEndpoints, TokenService
from joedefender_emulators.mde.common import render_error
from joedefender_emulators.mde.inspection import Inspection
from joedefender_emulators.mde.ratelimit import RateLimiter
from joedefender_emulators.mde.state import TenantState
from joedefender_emulators.scenario import Scenario
from joedefender_emulators.tls import EmulatorCertificates


class MdeEmulator(Served):
    """Serves the scenario's tenant over https on loopback; a context manager."""

    def __init__(
        self, scenario: Scenario, clock: EmulatedClock, certificates: EmulatorCertificates, port: int = 0
    ) -> None:
        self.scenario = scenario
        self.clock = clock
        self.state = TenantState(scenario, clock)
        self.tokens = TokenService(scenario.defender, clock, scenario.graph.permissions)
        self.limiter = RateLimiter(clock, enabled=scenario.defender.rate_limits)
        router = Router(case_insensitive=True)
        MdeApi(self.state, self.tokens, EntraEndpoints(scenario.defender, clock, self.tokens), self.limiter).register(
            router
        )
        Inspection(self.state, self.tokens).register(router)
        self.server = EmulatorServer(
            "defender",
            router,
            render_error,
            clock,
            FaultInjector("defender", scenario.faults, seed=scenario.seed),
            port=port,
            ssl_context=certificates.server_context(),
        )

    def stop(self) -> None:
        super().stop()
        self.state.close()  # the Linux and macOS devices' real folders
