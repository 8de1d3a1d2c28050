"""The errors a configuration problem raises: each names the setting and what is wrong with it."""

from collections.abc import Sequence

from joedefender.domain.errors import JoeDefenderError


class ConfigurationError(JoeDefenderError):
    """A setting is missing or wrong; the message names the setting and what is wrong with it."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class SettingsError(ConfigurationError):
    """One or more settings are wrong; `problems` lists each (setting, problem) pair."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        if not problems:
            raise ValueError("SettingsError needs at least one problem")
        self.problems = list(problems)
        super().__init__(*self.problems[0])
        if len(self.problems) > 1:
            self.setting = ", ".join(dict.fromkeys(setting for setting, _ in self.problems))
            self.problem = "; ".join(f"{setting}: {problem}" for setting, problem in self.problems)
            lines = "\n".join(f"  {setting}: {problem}" for setting, problem in self.problems)
            self.args = (f"{len(self.problems)} problems in the settings:\n{lines}",)
