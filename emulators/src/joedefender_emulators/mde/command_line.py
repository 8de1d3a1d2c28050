"""How an emulated Windows endpoint turns a RunScript `Args` string into a script's parameters.

The live response docs say nothing about how `Args` reaches the script (mde-api.md section 4 only
shows `{"key": "Args", "value": "OfficeClickToRun"}`). The emulator models the likeliest way, a
`powershell.exe -File <script> <Args>` process, and applies its two stages as Windows does them,
so that a caller whose Args would be split or bound differently on a real endpoint sees that here:

1. The command line is split into words by the Microsoft C runtime rules (what
   `CommandLineToArgvW` and powershell.exe's own start-up do): blanks (space, tab) separate
   words; double quotes group, and may start or end mid-word; backslashes are literal except
   before a double quote, where 2n backslashes give n and the quote groups, 2n+1 give n and a
   literal quote; `""` inside a quoted run is a literal quote (the 2008 C runtime's rule; older
   runtimes and CommandLineToArgvW also end the quoted run there, which the emulator does not
   model: a caller must not rely on either). Single quotes, `^`, `%`, `$`,
   backticks, `;` and `&` mean nothing at this stage (there is no cmd.exe and no PowerShell
   parser in between under `-File`). The command line ends at a NUL character, as a C string does.
2. PowerShell binds the words to the param block: `-Name value` or `-Name:value`; names are
   case-insensitive and may be shortened to any unambiguous prefix (counting the common
   parameters `[CmdletBinding()]` adds); a word starting with `-` and a letter is always a
   parameter name, so it cannot be a value; with `PositionalBinding = $false` (both scripts) a
   bare word is an error; a parameter given twice is an error.

Written independently of the connector's own contract (`joedefender.endpoint.contract`): the
tests check the contract's Args against this, not the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence

from joedefender_emulators.errors import EmulatorError

_BLANKS = " \t"
# The common parameters of an advanced script (about_CommonParameters), which take part in prefix
# matching: `-O` is ambiguous between OriginalPathHex, OutVariable and OutBuffer.
COMMON_PARAMETERS = (
    "Verbose",
    "Debug",
    "ErrorAction",
    "WarningAction",
    "InformationAction",
    "ProgressAction",
    "ErrorVariable",
    "WarningVariable",
    "InformationVariable",
    "OutVariable",
    "OutBuffer",
    "PipelineVariable",
)


class BindingError(EmulatorError):
    """PowerShell would not start the script with these arguments."""


def split_command_line(text: str) -> list[str]:
    """The words of a Windows command line, by the Microsoft C runtime rules (see the module doc)."""
    text = text.split("\0", 1)[0]
    words: list[str] = []
    word: list[str] = []
    in_word = quoted = False
    at = 0
    while at < len(text):
        char = text[at]
        if char == "\\":
            run = len(text) - at - len(text[at:].lstrip("\\"))
            at += run
            in_word = True
            if at < len(text) and text[at] == '"':
                word.append("\\" * (run // 2))
                if run % 2:
                    word.append('"')
                    at += 1
                # an even run: the quote is handled as a quote on the next turn
            else:
                word.append("\\" * run)
            continue
        if char == '"':
            in_word = True
            if quoted and text[at + 1 : at + 2] == '"':
                word.append('"')  # "" inside quotes: a literal quote, still quoted
                at += 2
                continue
            quoted = not quoted
            at += 1
            continue
        if char in _BLANKS and not quoted:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            at += 1
            continue
        word.append(char)
        in_word = True
        at += 1
    if in_word:
        words.append("".join(word))
    return words


def _is_name(word: str) -> bool:
    """PowerShell takes `-` followed by a letter (or `_`, `?`) as a parameter name."""
    return len(word) > 1 and word[0] == "-" and (word[1].isalpha() or word[1] in "_?")


def _resolve(given: str, parameters: Sequence[str]) -> str:
    names = [*parameters, *COMMON_PARAMETERS]
    exact = [name for name in names if name.lower() == given.lower()]
    matches = exact or [name for name in names if name.lower().startswith(given.lower())]
    if not matches:
        raise BindingError(f"A parameter cannot be found that matches parameter name '{given}'.")
    if len(matches) > 1:
        raise BindingError(
            f"Parameter cannot be processed because the parameter name '{given}' is ambiguous. "
            f"Possible matches include: {' '.join('-' + m for m in matches)}."
        )
    if matches[0] in COMMON_PARAMETERS:
        # the simulated scripts take none; an emulator limit, not PowerShell's
        raise BindingError(f"The common parameter -{matches[0]} is not simulated by the emulator.")
    return matches[0]


def bind(args: str, parameters: Sequence[str]) -> dict[str, str]:
    """The parameters `args` gives a script whose param block declares `parameters` (all strings,
    none positional), by their declared names; raises BindingError where PowerShell would refuse."""
    words = split_command_line(args)
    bound: dict[str, str] = {}
    at = 0
    while at < len(words):
        word = words[at]
        if not _is_name(word):
            raise BindingError(f"A positional parameter cannot be found that accepts argument '{word[:40]}'.")
        given, colon, inline = word[1:].partition(":")
        name = _resolve(given, parameters)
        if name in bound:
            raise BindingError(f"Cannot bind parameter because parameter '{name}' is specified more than once.")
        if colon:
            value = inline
            at += 1
        elif at + 1 < len(words) and not _is_name(words[at + 1]):
            value = words[at + 1]
            at += 2
        else:
            raise BindingError(
                f"Missing an argument for parameter '{name}'. Specify a parameter of type 'System.String'."
            )
        bound[name] = value
    return bound
