"""The Microsoft Graph security API emulator: alerts_v2 and incidents on the MDE emulator's tenant
(see /work/shared/reference/coverage.md section 4)."""

from joedefender_emulators.graph.emulator import GraphEmulator

__all__ = ["GraphEmulator"]
