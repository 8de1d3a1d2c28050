"""Starts the emulators (MDE, Graph, Joe Sandbox) on one scenario and says how a connector reaches them."""

from __future__ import annotations

import shutil
from pathlib import Path

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.graph import GraphEmulator
from joedefender_emulators.joe import JoeEmulator
from joedefender_emulators.mde import MdeEmulator
from joedefender_emulators.scenario import Scenario
from joedefender_emulators.tls import EmulatorCertificates, create_certificates


class Emulators:
    """The MDE, Graph and Joe Sandbox emulators on one shared emulated clock; a context manager.
    MDE and Graph serve the same tenant (alerts, comments, machines) and take tokens of the same
    issuer, the MDE emulator's Entra endpoints."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        defender_port: int = 0,
        joe_port: int = 0,
        graph_port: int = 0,
        certificates_dir: Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.clock = EmulatedClock(scenario.time_scale)
        self.certificates: EmulatorCertificates = create_certificates(certificates_dir)
        self._owns_certificates = certificates_dir is None
        self.defender = MdeEmulator(scenario, self.clock, self.certificates, port=defender_port)
        self.graph = GraphEmulator(
            scenario, self.clock, self.certificates, self.defender.state, self.defender.tokens, port=graph_port
        )
        self.joe = JoeEmulator(scenario, self.clock, port=joe_port)

    def start(self) -> Emulators:
        started: list[MdeEmulator | GraphEmulator | JoeEmulator] = []
        try:
            for emulator in (self.defender, self.graph, self.joe):
                emulator.start()
                started.append(emulator)
        except BaseException:
            for emulator in reversed(started):
                emulator.stop()
            raise
        return self

    def stop(self) -> None:
        self.joe.stop()
        self.graph.stop()
        self.defender.stop()
        if self._owns_certificates:
            shutil.rmtree(self.certificates.ca_file.parent, ignore_errors=True)

    def __enter__(self) -> Emulators:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def settings(self) -> dict[str, str]:
        """The connector settings that point at these emulators, in the order `emulate` prints them."""
        defender = self.scenario.defender
        return {
            "DefenderApiBaseURL": self.defender.url,
            "GraphApiBaseURL": self.graph.url,
            "AzureAuthorityHost": self.defender.url,
            "AzureTenantID": defender.tenant_id,
            "AzureClientID": defender.client_id,
            "AzureClientSecret": defender.client_secret,
            "JoeSandboxBaseURL": self.joe.url,
            "JoeSandboxAPIKey": self.scenario.joe.api_key,
            "TlsCaBundle": str(self.certificates.ca_file),
        }
