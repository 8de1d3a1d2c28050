"""Judging a client's pacing on an emulator's own timeline (GET /_emulator/timeline): its
exchanges with received and answered times, status and Retry-After."""

from __future__ import annotations

from typing import Any


def assert_every_retry_after_was_waited(exchanges: list[dict[str, Any]]) -> None:
    """After each 429, the next request for the same path reached the emulator no sooner than the
    Retry-After it was given (and there was one)."""
    for answer in (e for e in exchanges if e["status"] == 429):
        after = [e for e in exchanges if e["path"] == answer["path"] and e["received"] > answer["answered"]]
        assert after, f"no retry after the 429 on {answer['path']}"
        retry = min(after, key=lambda e: e["received"])
        assert retry["received"] - answer["answered"] >= float(answer["retryAfter"])
