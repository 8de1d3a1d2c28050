"""Attacker-influenced text made safe to show: one line, visible, bounded.

File names, paths, URLs, threat names and Defender's own error texts may come from an attacker.
Before they reach a comment (or any other text a person reads) every character that could hide
or fake something is shown escaped instead: control characters (so no newline can start a fake
line), bidirectional overrides and isolates (so `exe.cod` cannot display as `doc.exe`), and
zero-width and other invisible format characters. Backslashes stay as they are (Windows paths);
the escapes use `\\u{...}`, which no file name can contain unnoticed since `{` is shown as is.
"""

from __future__ import annotations

import unicodedata

ELLIPSIS = "…"


def _escaped(ch: str) -> str:
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    return f"\\u{{{ord(ch):04X}}}"


def _hidden(ch: str) -> bool:
    # Cc: controls; Cf: format (bidi controls, zero-width, soft hyphen...); Cs: lone surrogates;
    # Co/Cn: private-use and unassigned code points, whose rendering nobody can predict;
    # Zl/Zp: line and paragraph separators, which some viewers break lines on.
    return unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def shown(value: str, limit: int) -> str:
    """`value` on one line with every hidden character escaped, at most `limit` characters long."""
    text = "".join(_escaped(ch) if _hidden(ch) else ch for ch in value)
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ELLIPSIS))] + ELLIPSIS
