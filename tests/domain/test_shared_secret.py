"""The webhook secret's strength rule: long and varied, judged without ever quoting the secret."""

from __future__ import annotations

import secrets
import uuid

import pytest

from joedefender.domain.shared_secret import MIN_LENGTH, new_shared_secret, shared_secret_weakness


def test_a_fresh_secret_is_strong_long_and_new_each_time() -> None:
    fresh = {new_shared_secret() for _ in range(100)}
    assert len(fresh) == 100
    for secret in fresh:
        assert len(secret) == 43
        assert shared_secret_weakness(secret) is None


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_hex(16),  # openssl rand -hex 16
        lambda: secrets.token_urlsafe(24),
        lambda: str(uuid.uuid4()),
        lambda: secrets.token_hex(32).upper(),
    ],
)
def test_random_secrets_of_the_usual_shapes_pass(make: object) -> None:
    assert callable(make)
    for _ in range(2000):
        assert shared_secret_weakness(make()) is None


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("a" * (MIN_LENGTH - 1), "too short"),
        ("a" * 24, "too short"),
        ("a" * 100, "too little variety"),
        ("ab" * 16, "too little variety"),
        ("password" * 4, "too little variety"),
        ("0123456789" * 4, "too little variety"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "too little variety"),
    ],
)
def test_short_or_patterned_secrets_are_refused(secret: str, reason: str) -> None:
    weakness = shared_secret_weakness(secret)
    assert weakness is not None
    assert weakness.startswith(reason)
    assert secret not in weakness
