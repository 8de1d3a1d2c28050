"""The root of the errors the emulators raise, apart from the product's own."""


class EmulatorError(Exception):
    """Base class of the emulators' errors (scenario files, the simulated endpoint)."""
