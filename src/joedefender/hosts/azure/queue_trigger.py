"""The queue triggers: one delivered message advances the work items it names by one step each.

The message names a work key (`{"key", "due"}`), or several (`{"wakes": [...]}`: the triages a
poll recorded together); the store leases each item in turn (`accept_each`), the engine runs its
step and completes or reschedules it, which sends the next message. A message that is
stale, early or for an item someone else holds is consumed without work: the store has already
made sure a message exists for the item's true due time. Whatever the engine cannot handle
(the store failing) is raised, and the Functions host's semantics apply: the message is seen again
after host.json's visibilityTimeout, and after maxDequeueCount deliveries it goes to the poison
queue; the timer sweeper queues the work again if the records say it is unfinished.
"""

from __future__ import annotations

import logging

import azure.functions as func
from joedefender.hosts.azure import telemetry
from joedefender.hosts.azure.runtime import Runtime

logger = logging.getLogger("joedefender.functions")


def advance(runtime: Runtime, message: func.QueueMessage) -> None:
    hosted = runtime.hosted()
    app = hosted.connector.app
    body = message.get_body().decode("utf-8", "replace")
    owner = runtime.owner(f"{message.id or 'message'}-{message.dequeue_count or 0}")
    ran = 0
    for item in hosted.store.accept_each(body, owner=owner, now=app.now, lease_seconds=app.step_lease):
        with telemetry.bound(**telemetry.ids_of(item.key)):
            app.run_claimed(item)
        ran += 1
    if not ran:
        logger.debug("queue message for no due, free work item; consumed")
