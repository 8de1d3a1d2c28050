"""The file name Joe Sandbox is given for a sample.

The name comes from the attacker's side (Defender evidence), so it is reduced to a safe character
set and length; the extension survives because Joe picks the analysis (PE, Office, script...) by it.
"""

from __future__ import annotations

import re
import unicodedata

MAX_NAME_LENGTH = 128
MAX_EXTENSION_LENGTH = 16
DEFAULT_NAME = "sample"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_AROUND_DOT_OR_DASH = re.compile(r"_*([.-])[._-]*")
_UNDERSCORES = re.compile(r"__+")


def safe_sample_name(original: str) -> str:
    """`original`'s last path component in [A-Za-z0-9._-], with its extension, at most 128 chars."""
    name = re.split(r"[\\/]", original)[-1]
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    stem = _clean(stem)
    extension = _clean(extension).replace(".", "")[:MAX_EXTENSION_LENGTH]
    suffix = f".{extension}" if extension else ""
    stem = stem[: MAX_NAME_LENGTH - len(suffix)].rstrip("._-") or DEFAULT_NAME
    return stem + suffix


def _clean(text: str) -> str:
    # Accented letters keep their base letter ("résumé" -> "resume") instead of becoming "_".
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    safe = _UNSAFE.sub("_", ascii_text)
    safe = _AROUND_DOT_OR_DASH.sub(r"\1", safe)  # "copy_.pdf" -> "copy.pdf", "a..b" -> "a.b"
    return _UNDERSCORES.sub("_", safe).strip("._-")
