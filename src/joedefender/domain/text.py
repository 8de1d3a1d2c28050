"""Attacker-influenced text made safe to show: one line, visible, bounded.

File names, paths, URLs, threat names, IOC values and Defender's own error texts may come from an
attacker. `shown` is the one function that makes such text safe wherever it leaves the connector:
a comment, an indicator's title and description, `joedefender status` (terminal and the Azure
`status` function), a history line and a log line. Every character that could hide or fake
something is shown escaped instead: control characters (so no newline can start a fake line and
no ESC sequence reaches a terminal), bidirectional overrides and isolates (so `exe.cod` cannot
display as `doc.exe`), and zero-width and other invisible format characters. Runs of blanks
(spaces of any width, and letters that render as nothing, like U+3164) become one space, so 200
spaces cannot push the rest of a line onto a line of its own in a narrow view. Backslashes stay
as they are (Windows paths); the escapes use `\\u{...}`, which no file name can contain unnoticed
since `{` is shown as is.
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


# Characters that render as blank space without being category Zs: Hangul fillers and the blank
# Braille pattern, favourites for padding a name invisibly.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def hidden(ch: str) -> bool:
    """A character a reader cannot see for what it is (see `shown`)."""
    # Cc: controls; Cf: format (bidi controls, zero-width, soft hyphen...); Cs: lone surrogates;
    # Co/Cn: private-use and unassigned code points, whose rendering nobody can predict;
    # Zl/Zp: line and paragraph separators, which some viewers break lines on.
    return unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _blank(ch: str) -> bool:
    return ch == " " or unicodedata.category(ch) == "Zs" or ch in _BLANK_LETTERS


def shown(value: str | None, limit: int) -> str:
    """`value` on one line, every hidden character escaped, blank runs as one space, the ends
    trimmed, at most `limit` characters long (an ellipsis marks a cut). Linear in `limit`: a
    value of any length costs no more than its first few `limit` characters."""
    parts: list[str] = []
    size = 0
    blank = False
    for ch in value or "":
        if _blank(ch):
            blank = True
            continue
        if blank and parts:
            parts.append(" ")
            size += 1
            blank = False
        piece = _escaped(ch) if hidden(ch) else ch
        parts.append(piece)
        size += len(piece)
        if size > limit:
            break
    text = "".join(parts)
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ELLIPSIS))] + ELLIPSIS
