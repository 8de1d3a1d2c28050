"""Byte formats read on the connector's side, from what a device sent: Defender's quarantine.

What comes from a device is attacker-influenced, so every reader here is linear in its input,
bounded in memory, and fails with the domain's format error rather than anything else.
"""
