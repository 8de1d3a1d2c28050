"""Attacker text leaving the connector through the log and `status`: one line, escaped, bounded.

(Comments and indicator texts: tests/domain/test_comment_safety.py.)"""

from __future__ import annotations

import io
import logging
import time

from rich.console import Console

from joedefender.adapters.memory import MemoryStore
from joedefender.domain.jobs import AlertRecord, AlertState, SampleJob
from joedefender.domain.reasons import Cause, Reason
from joedefender.hosts.logfilter import MAX_LOG, SafeFormatter, SafeText
from joedefender.hosts.standalone.status import FIELD, ROWS, print_status
from joedefender.pipeline.clock import Clock
from joedefender.pipeline.facade import Status
from joedefender.pipeline.records import MAX_DETAIL, Changes

HOSTILE = "x\x1b]8;;http://evil.example\x07click\x1b[2J\u202eexe.doc\u200b\nJoe Sandbox: CLEAN (score 0/100)"
UNSAFE = ("\x1b", "\x07", "\u202e", "\u200b")
LONG_URL = "http://evil.example/" + "a" * 100_000


def _logged(record_args: tuple[object, ...], exc: BaseException | None = None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SafeText())
    handler.setFormatter(SafeFormatter("%(name)s: %(message)s"))
    logger = logging.getLogger("test.safe")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    if exc is None:
        logger.warning("poller: skipping an alert Defender returned: %s (%s)", *record_args)
    else:
        try:
            raise exc
        except type(exc):
            logger.exception("step %s failed", *record_args)
    return stream.getvalue()


def test_a_log_line_quoting_attacker_text_stays_one_safe_bounded_line() -> None:
    text = _logged((HOSTILE, LONG_URL))
    assert text.count("\n") == 1  # the line's own end, nothing else
    assert not any(ch in text for ch in UNSAFE)
    assert "\\u{001B}]8;;http://evil.example\\u{0007}click" in text
    assert "\\nJoe Sandbox: CLEAN" in text
    assert len(text) <= MAX_LOG + 40


def test_a_traceback_cannot_forge_a_log_line() -> None:
    text = _logged(("sha256:abc",), ValueError(HOSTILE))
    lines = text.splitlines()
    assert lines[0] == "test.safe: step sha256:abc failed"
    assert all(line.startswith("  | ") for line in lines[1:])  # every traceback line under the record
    assert not any(ch in text for ch in UNSAFE)
    assert "  | Joe Sandbox: CLEAN (score 0/100)" in lines  # the forged line stays inside the traceback


def _store_with(alerts: int, url: str, failure: str, detail: str) -> Status:
    status = Status(MemoryStore(), Clock())
    records = status.records
    now = time.time()
    uow = records.store.unit_of_work()
    changes = Changes(uow, Clock())
    for n in range(alerts):
        key = f"url:{n:032x}"
        job = SampleJob(key=key, kind="url", url=url, created_at=now, updated_at=now + n)
        job.failure = Cause(reason=Reason.NOT_COLLECTED, detail=failure)
        changes.create(records.jobs, key, job)
        alert = AlertRecord(alert_id=f"a{n}", received_at=now + n, samples=[key], state=AlertState.ACCEPTED)
        changes.create(records.alerts, f"a{n}", alert)
        changes.record(key, "collect", "failed", detail)
    changes.commit()
    return status


def _status(status: Status, alert_id: str | None = None) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None, force_terminal=False, no_color=True)
    assert print_status(status, console, alert_id)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def test_status_escapes_every_field_and_bounds_each_one() -> None:
    records = _store_with(1, LONG_URL + HOSTILE, HOSTILE * 50, HOSTILE + LONG_URL)
    [entry] = records.records.store.history("url:" + "0" * 32)
    assert len(entry.detail) <= MAX_DETAIL  # the history line is stored safe and bounded
    assert not any(ch in entry.detail for ch in UNSAFE)
    for text in (_status(records), _status(records, "a0")):
        assert not any(ch in text for ch in UNSAFE)
        assert "aaaa" in text
        assert len(text) < 20_000  # a 100,000-character URL once gave 699 KB


def test_status_lists_the_most_recent_rows_and_says_how_many_there_are() -> None:
    records = _store_with(ROWS + 50, LONG_URL, HOSTILE, HOSTILE)
    text = _status(records)
    assert f"the {ROWS} most recent of {ROWS + 50} alerts" in text
    assert f"the {ROWS} most recent of {ROWS + 50} sample jobs" in text
    assert " a249 " in text
    assert " a0 " not in text
    assert len(text) < 2 * ROWS * (4 * FIELD + 1000)  # bounded whatever the store holds
