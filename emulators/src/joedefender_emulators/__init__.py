"""Emulators of the Microsoft Defender for Endpoint and Joe Sandbox APIs, for tests, the demo and
the benchmarks: seeded from a scenario file, inspectable under ``/_emulator/``.

A separate package in the joedefender distribution. It imports nothing of ``joedefender``
(an import-linter contract checks it): the simulated endpoint plays the collection script from
its own description of it, so the tests check the product against it rather than against itself.
Only the ``emulate`` and ``demo`` commands import it, lazily.
"""
