"""Deployment tooling: the ARM templates' generator, the Functions package builder, the checkov gate.

Not part of the installed connector: these run from a checkout (`make templates`, `make package`,
`make check-deploy`).
"""
