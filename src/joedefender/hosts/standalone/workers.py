"""A pool of worker threads running the connector's steps as they come due.

An idle worker waits on a condition until the next item is due or new work is enqueued; it never
sleeps a fixed time hoping the work is ready.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid

from joedefender.pipeline.facade import Application

logger = logging.getLogger("joedefender.workers")
_MAX_IDLE_WAIT = 1.0  # re-read the queue at least this often: another process may share the store
# An item put off until a moment is due then, give or take the rounding of "now + (moment - now)".
_SAME_MOMENT = 0.001


class WorkerPool:
    def __init__(self, app: Application, size: int) -> None:
        self._app = app
        self._size = size
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._prefix = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def start(self) -> None:
        for n in range(self._size):
            thread = threading.Thread(target=self._work, args=(f"{self._prefix}-{n}",), name=f"worker-{n}")
            thread.start()
            self._threads.append(thread)

    def notify(self) -> None:
        """New work was enqueued: wake an idle worker."""
        with self._wake:
            self._wake.notify_all()

    def stop(self) -> None:
        """Finish the steps under way, start no new ones."""
        self._stopping.set()
        self.notify()
        for thread in self._threads:
            thread.join()

    def wait_idle(self) -> None:
        """Return once the queue is empty and no worker is busy (for --until-idle)."""
        while not self.wait_idle_for(_MAX_IDLE_WAIT):
            pass

    def wait_idle_for(self, timeout: float, *, before: float | None = None) -> bool:
        """Wait at most `timeout` for the pool to go idle; True if it is: no worker busy, and
        nothing queued, or (with `before`) nothing due before that time."""
        with self._wake:
            if not self._stopping.is_set() and not self._idle(before):
                self._wake.wait(timeout)
            return self._stopping.is_set() or self._idle(before)

    def _idle(self, before: float | None) -> bool:
        app = self._app
        if self._busy or not app.pending():
            return not self._busy
        due = app.next_due()
        return before is not None and due is not None and due >= before - _SAME_MOMENT

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _work(self, owner: str) -> None:
        app = self._app
        while not self._stopping.is_set():
            with self._wake:
                self._busy += 1
            ran = False
            try:
                ran = app.run_next(owner)
            except Exception:  # the store itself failed; keep the worker alive
                logger.exception("worker %s could not run a step", owner)
            finally:
                with self._wake:
                    self._busy -= 1
                    # Only a step that ran may have made work or ended the last: an idle worker
                    # that woke the others would be woken by them in turn, round and round.
                    if ran:
                        self._wake.notify_all()
            if ran:
                continue
            due = app.next_due()
            wait = _MAX_IDLE_WAIT if due is None else min(_MAX_IDLE_WAIT, max(0.0, due - app.now()))
            with self._wake:
                if not self._stopping.is_set():
                    self._wake.wait(wait)
