"""The connector's settings: one immutable object, validated once at start.

JoeAz's setting names keep their meaning and units, so a JoeAz configuration loads unchanged;
new settings use the same PascalCase style. Every problem names the setting, and all problems
are reported together so a user fixes a configuration in one pass, not one error at a time.

A package of small modules: `parsers` and `network` (one setting's value), `model` (the settings
and their defaults), `rules` (across settings), `loading` (names and errors), `files` (dotenv and
local.settings.json). It loads no client library: what only a client can check (Joe's analysis
parameters) is checked where that client is built.
"""

from joedefender.domain.shared_secret import MIN_LENGTH as MIN_WEBHOOK_SECRET
from joedefender.settings.errors import ConfigurationError, SettingsError
from joedefender.settings.files import read_settings_file
from joedefender.settings.model import DETECTION_SOURCES, SETTING_NAMES, SEVERITIES, STATUSES, Settings
from joedefender.settings.network import is_loopback

__all__ = [
    "DETECTION_SOURCES",
    "MIN_WEBHOOK_SECRET",
    "SETTING_NAMES",
    "SEVERITIES",
    "STATUSES",
    "ConfigurationError",
    "Settings",
    "SettingsError",
    "is_loopback",
    "read_settings_file",
]
