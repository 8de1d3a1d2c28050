"""How an emulated Linux or macOS endpoint turns a RunScript `Args` string into bash's `$1..$n`.

The docs do not say (coverage.md section 1.2): not how `Args` is split, not whether a shell reads
it first, not the interpreter. They only say not to include `;` `&` `|` `!` `$`, which suggests a
shell may see it. ANY.RUN's production Linux script reads space-separated arguments as "$1" "$2"
"$@", so the emulator splits on blanks (spaces and tabs). Where the likely readings disagree (a
shell would group quotes, expand globs, `~`, backticks and backslashes; a plain split would keep
them) the emulator refuses the command rather than pick one: a caller that sends such characters
cannot know what a real device makes of them. The forbidden characters are refused too (what the
agent does with them is not documented either).

Written independently of the connector's contract (`joedefender.endpoint.posix_contract`).
"""

from __future__ import annotations

from joedefender_emulators.errors import EmulatorError

FORBIDDEN = frozenset(";&|!$")
# Characters some reading of Args would change: quotes, escapes, globs, expansions, redirections,
# grouping, comments, and line breaks.
AMBIGUOUS = frozenset("'\"\\`*?[]{}()<>~#=%^\n\r\x00")
BLANKS = " \t"


class ArgsRefused(EmulatorError):
    """Live response would refuse these Args, or what bash would receive is not documented."""


def split_args(args: str) -> list[str]:
    """The words bash receives as `$1..$n`; raises ArgsRefused (see the module doc)."""
    forbidden = sorted(FORBIDDEN.intersection(args))
    if forbidden:
        raise ArgsRefused(f"Args must not contain {' '.join(forbidden)} (live-response-command-examples.md)")
    ambiguous = sorted(AMBIGUOUS.intersection(args))
    if ambiguous:
        shown = " ".join(repr(c) for c in ambiguous)
        raise ArgsRefused(f"how bash would receive {shown} in Args is not documented: the emulator refuses it")
    return args.replace("\t", " ").split()
