"""Adapters: implementations of the core's ports."""
