"""The root of every error joedefender raises, so callers can catch ours apart from the rest."""


class JoeDefenderError(Exception):
    """Base class of all joedefender errors."""


class ConfigurationError(JoeDefenderError):
    """A setting is missing or wrong; the message names the setting and what is wrong with it."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")
