"""The Microsoft Defender for Endpoint API emulator (see /work/shared/reference/mde-api.md)."""

from joedefender_emulators.mde.emulator import MdeEmulator

__all__ = ["MdeEmulator"]
