"""The webhook's shared secret: how strong it must be, and how to make a fresh one.

The secret is all that stands between the network and the intake (anyone who has it can make the
connector look up and comment any alert id), and it is a static bearer value, so it must be long
and random, not merely long: 24 times `a` passed a length rule.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter

MIN_LENGTH = 32  # characters; a fresh secret (`new_shared_secret`) has 43
# Bits by a Shannon estimate over the secret's own characters: it cannot tell a random secret from
# a clever pattern, only catch runs and little variety. 32 random hex digits (128 bits, as
# `openssl rand -hex 16` prints them) estimate 115 on average and above 95 in 2,000 draws;
# `abab...` to 32 characters, 32.
MIN_ESTIMATED_BITS = 80
_FRESH_BYTES = 32  # 256 bits from the OS's CSPRNG


def estimated_bits(secret: str) -> float:
    """The secret's length times the Shannon entropy of its own character frequencies."""
    size = len(secret)
    return -sum(count * math.log2(count / size) for count in Counter(secret).values())


def shared_secret_weakness(secret: str) -> str | None:
    """Why `secret` is too weak to guard the webhook, in words that never quote it; None if strong."""
    if len(secret) < MIN_LENGTH:
        return f"too short: at least {MIN_LENGTH} characters"
    if estimated_bits(secret) < MIN_ESTIMATED_BITS or _repeats(secret):
        return "too little variety (a run of one character or a short pattern repeated)"
    return None


def _repeats(secret: str) -> bool:
    """`secret` is a shorter piece written again and again ("password" four times)."""
    return secret in (secret + secret)[1:-1]


def new_shared_secret() -> str:
    """A fresh secret: 32 random bytes, URL-safe base64 (43 characters, usable as `?code=`)."""
    return secrets.token_urlsafe(_FRESH_BYTES)
