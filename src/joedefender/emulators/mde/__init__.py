"""The Microsoft Defender for Endpoint API emulator (see /work/shared/reference/mde-api.md)."""

from joedefender.emulators.mde.emulator import MdeEmulator

__all__ = ["MdeEmulator"]
