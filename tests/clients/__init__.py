"""Tests of the MDE and Joe Sandbox clients."""
