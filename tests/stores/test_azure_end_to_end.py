"""The whole connector on the Azure store: the demo scenario's alerts, over the emulators' sockets,
with state, work queue, machine leases and the Defender rate budget all on Azurite, every step
started by a queue message as the Functions app starts it. (Pull mode, `claim`, is the contract
suite's.)"""

from __future__ import annotations

import time
from collections.abc import Callable

from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from joedefender.adapters.azure.connection import AzureStorageConnection
from joedefender.adapters.azure.store import AzureStore
from joedefender.bootstrap import open_connector
from joedefender.domain.comments import MARKER_PREFIX
from joedefender.pipeline.clock import Clock
from joedefender_emulators.scenario import load_scenario
from tests.azurite import Azurite, unique_prefix
from tests.pipeline.test_end_to_end import DEMO_HEADLINES
from tests.stores.helpers import wait_for
from tests.world import World


def test_the_demo_scenario_ends_as_expected_pushed_by_queue_messages(
    make_world: Callable[..., World], azurite: Azurite
) -> None:
    """As the Functions app runs it: every step starts from a delivered wake-up (`accept`), never
    from a claim; so each wait, retry and new work item must have sent its message."""
    demo = load_scenario().model_copy(update={"time_scale": 0.002})
    w = make_world(demo, JoeSandboxResubmitAfterDays="7")
    connection = AzureStorageConnection(connection_string=azurite.connection_string)
    with (
        AzureStore.from_connection(connection, prefix=unique_prefix()) as store,
        open_connector(w.settings, clock=Clock(scale=demo.time_scale), store=store) as connector,
    ):
        queues = [
            QueueClient.from_connection_string(
                azurite.connection_string,
                name,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
            )
            for name in store.queue_names().values()
        ]
        for a in demo.defender.alerts:
            connector.app.receive(a["id"], source="test")

        def delivered() -> bool:
            """One round of a queue trigger's polling; True once no work is left."""
            for queue in queues:
                for message in queue.receive_messages(max_messages=16, visibility_timeout=60):
                    for item in store.accept_each(message.content, owner="host", now=time.time, lease_seconds=120):
                        connector.app.run_claimed(item)
                    queue.delete_message(message)
            return store.pending() == 0

        wait_for(delivered, timeout=240)

    for alert_id, headline in DEMO_HEADLINES.items():
        ours = [c for c in w.comments(alert_id) if MARKER_PREFIX in c]
        assert len(ours) == 1, (alert_id, ours)
        assert ours[0].startswith(f"Joe Sandbox: {headline}"), ours[0]
