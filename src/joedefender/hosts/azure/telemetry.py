"""Custom dimensions on every log line: the alert, sample, machine and action a step works on.

Application Insights keeps a log record's extra attributes as customDimensions (the Functions
worker's OpenTelemetry export and the azure-monitor exporters read them from the record; the
older OpenCensus handler reads the `custom_dimensions` attribute, set too). The ids come from a
context variable that the trigger binds around one step, so the pipeline's own log lines carry
them without knowing about Azure; the record factory adds them to records from every logger.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from joedefender.domain.keys import TENANT_BATCH, WorkKey, WorkKind
from joedefender.hosts.logfilter import made_safe
from joedefender.pipeline.facade import Records

DIMENSIONS = ("alert_id", "sample", "machine_id", "action_id", "work_item")
_NONE: Mapping[str, str] = MappingProxyType({})
_current: ContextVar[Mapping[str, str]] = ContextVar("joedefender_dimensions", default=_NONE)
_installed = threading.Lock()
_factory_installed = False


@contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Add these ids (None ones left out) to every record logged inside the block."""
    merged = {**_current.get(), **{k: v for k, v in ids.items() if v}}
    token = _current.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _current.reset(token)


def current() -> Mapping[str, str]:
    return _current.get()


def install() -> None:
    """Wrap the log record factory once per process (idempotent): every record made safe
    (`made_safe`) and given the ids; and keep the Azure SDKs' request logging (a record per HTTP
    call, at INFO) out of Application Insights."""
    global _factory_installed  # noqa: PLW0603 - one factory per process, installed once
    with _installed:
        if _factory_installed:
            return
        logging.getLogger("azure").setLevel(logging.WARNING)
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = made_safe(previous(*args, **kwargs))  # attacker text: one line, escaped, bounded
            ids = _current.get()
            if ids:
                for name, value in ids.items():
                    setattr(record, name, value)
                record.custom_dimensions = {**getattr(record, "custom_dimensions", {}), **ids}
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


def ids_of(key: str, records: Records) -> dict[str, str | None]:
    """The ids a work item is about, from its key and (for a sample) its job's current attempt."""
    work = WorkKey.parse(key)
    ids: dict[str, str | None] = {"work_item": key}
    if work is None:
        return ids
    if work.kind == WorkKind.TRIAGE:
        ids["alert_id"] = work.subject
    elif work.kind in (WorkKind.COMMENT, WorkKind.CLASSIFY):  # a link: <sample key>|<alert id>
        ids["sample"], _, ids["alert_id"] = work.subject.partition("|")
    elif work.kind == WorkKind.CLEANUP:  # <machine id>|<job id>
        ids["machine_id"] = work.subject.partition("|")[0]
    elif work.kind == WorkKind.INCIDENT:
        ids["incident_id"] = work.subject
    elif work.kind in (WorkKind.SAMPLE, WorkKind.INDICATORS) and work.subject != TENANT_BATCH:
        ids["sample"] = work.subject
        if work.kind == WorkKind.SAMPLE:
            stored = records.jobs.get(work.subject)
            attempt = stored.record.attempts[-1] if stored is not None and stored.record.attempts else None
            if attempt is not None:
                ids["machine_id"], ids["action_id"] = attempt.machine_id, attempt.action_id
    return ids
