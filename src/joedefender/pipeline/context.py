"""What every step works with: the store's repositories, the two APIs, the config and the time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from joedefender.domain.jobs import AlertRecord, AlertSampleLink, SampleJob
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.ports import DefenderApi, SandboxApi
from joedefender.pipeline.records import Repository
from joedefender.stores.base import Store

logger = logging.getLogger("joedefender.pipeline")


@dataclass(frozen=True)
class Outcome:
    """What a step says about its work item: done, or look again in `delay` real seconds."""

    delay: float | None = None

    @property
    def done(self) -> bool:
        return self.delay is None


DONE = Outcome()


def again(delay: float) -> Outcome:
    return Outcome(max(0.0, delay))


class Records:
    """The store's records by kind: what `status` reads and every step works on."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.alerts: Repository[AlertRecord] = Repository(store, "alert", AlertRecord)
        self.jobs: Repository[SampleJob] = Repository(store, "job", SampleJob)
        self.links: Repository[AlertSampleLink] = Repository(store, "link", AlertSampleLink)


@dataclass
class Context(Records):
    store: Store
    defender: DefenderApi
    sandbox: SandboxApi
    config: PipelineConfig
    now: Callable[[], float] = field(default=time.time)

    def __post_init__(self) -> None:
        Records.__init__(self, self.store)

    def enqueue(self, key: str, delay: float = 0.0) -> None:
        self.store.enqueue(key, self.now() + delay)

    def record(self, subject: str, step: str, outcome: str, detail: str = "") -> None:
        """One line of a job's or alert's history (shown by `status`) and of the log."""
        self.store.append_history(subject, step, outcome, detail, at=self.now())
        logger.info("%s %s: %s %s", subject, step, outcome, detail)
