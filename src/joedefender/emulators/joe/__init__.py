"""An emulated Joe Sandbox (REST API v2) for tests, the demo and benchmarks; see joe-api.md."""

from joedefender.emulators.joe.app import JoeEmulator

__all__ = ["JoeEmulator"]
