"""The ids a step is about (its alert, sample, machine, action and work item), for log lines.

A host binds what a work item's key says before it runs the step (the Azure Functions app puts
them on every log record as custom dimensions); the sample job binds the machine and action of
its current attempt once it has read the job, so no host reads a job to know them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

DIMENSIONS = ("alert_id", "sample", "machine_id", "action_id", "work_item")
_NONE: Mapping[str, str] = MappingProxyType({})
_current: ContextVar[Mapping[str, str]] = ContextVar("joedefender_dimensions", default=_NONE)


@contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Add these ids (None ones left out) to what `current` says inside the block."""
    merged = {**_current.get(), **{k: v for k, v in ids.items() if v}}
    token = _current.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _current.reset(token)


def current() -> Mapping[str, str]:
    return _current.get()
