"""The emulated tenant: everything the API reads and changes, behind one lock."""

from __future__ import annotations

import threading

from joedefender_emulators.clock import EmulatedClock
from joedefender_emulators.mde.alerts import AlertStore
from joedefender_emulators.mde.filesystem import EndpointFiles
from joedefender_emulators.mde.indicators import IndicatorStore
from joedefender_emulators.mde.library import Library
from joedefender_emulators.mde.liveresponse import LiveResponse
from joedefender_emulators.mde.machines import MachineDirectory
from joedefender_emulators.scenario import Scenario, ScenarioError


class TenantState:
    """One lock for the whole tenant: requests are few and short, and one lock cannot deadlock."""

    def __init__(self, scenario: Scenario, clock: EmulatedClock) -> None:
        tenant = scenario.defender
        ids = [m.id.lower() for m in tenant.machines]
        if len(set(ids)) != len(ids):
            raise ScenarioError("defender machine ids must be unique")
        self.lock = threading.RLock()
        self.clock = clock
        self.tenant = tenant
        self.alerts = AlertStore(tenant.alerts, clock.start if tenant.alert_times == "shifted" else None)
        self.machines = MachineDirectory(tenant.machines, clock)
        self.files = {
            m.id: EndpointFiles(
                m, scenario.samples, tenant.quarantine_getfile, tenant.damaged_entries, tenant.quarantine_script_read
            )
            for m in tenant.machines
        }
        self.library = Library()
        self.indicators = IndicatorStore(tenant.indicators, clock, tenant.max_active_indicators)
        self.live_response = LiveResponse(tenant, clock, self.machines, self.files, self.library)

    def close(self) -> None:
        """Remove the Linux and macOS devices' private folders."""
        with self.lock:
            for files in self.files.values():
                files.close()
