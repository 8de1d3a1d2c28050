"""Custom dimensions on every log line: the alert, sample, machine and action a step works on.

Application Insights keeps a log record's extra attributes as customDimensions (the Functions
worker's OpenTelemetry export and the azure-monitor exporters read them from the record; the
older OpenCensus handler reads the `custom_dimensions` attribute, set too). The ids come from the
pipeline's context variable (`pipeline.dimensions`): the trigger binds what the work key says
around one step, the sample job adds its attempt's machine and action, and the record factory
adds them to records from every logger.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from joedefender.domain.keys import TENANT_BATCH, WorkKey, WorkKind
from joedefender.hosts.logfilter import made_safe
from joedefender.pipeline.facade import DIMENSIONS, bound, current

__all__ = ["DIMENSIONS", "bound", "current", "ids_of", "install"]
_installed = threading.Lock()
_factory_installed = False


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
            ids = current()
            if ids:
                for name, value in ids.items():
                    setattr(record, name, value)
                record.custom_dimensions = {**getattr(record, "custom_dimensions", {}), **ids}
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


def ids_of(key: str) -> dict[str, str | None]:
    """The ids a work item is about, from its key (a sample job adds its attempt's own)."""
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
    return ids
