"""The session's Azurite (tests/azurite.py) for the Functions app's tests."""

from tests.azurite import azurite

__all__ = ["azurite"]
