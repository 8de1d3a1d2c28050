"""An emulated Joe Sandbox (REST API v2) for tests, the demo and benchmarks; see joe-api.md."""

from joedefender_emulators.joe.app import JoeEmulator

__all__ = ["JoeEmulator"]
