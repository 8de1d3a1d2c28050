"""An alert carrying more samples than one Azure Tables transaction holds is still triaged whole."""

from __future__ import annotations

import hashlib

from joedefender.adapters.azure.connection import AzureStorageConnection
from joedefender.adapters.azure.store import AzureStore
from joedefender.domain.alerts import Alert, Evidence
from joedefender.domain.jobs import AlertState
from joedefender.pipeline.alerts.triage import TriageWork
from joedefender.pipeline.config import PipelineConfig
from joedefender.pipeline.context import Context
from joedefender.pipeline.facade import Application
from tests.azurite import Azurite, unique_prefix
from tests.fakes import FakeDefender, FakeSandbox


def test_an_alert_with_a_hundred_files_attaches_every_one(azurite: Azurite) -> None:
    files = [f"MZ sample {n}".encode() for n in range(100)]  # 200 documents: two transactions' worth
    evidence = tuple(
        Evidence(entity_type="File", sha256=hashlib.sha256(data).hexdigest(), file_name=f"f{n}.exe", file_path="C:\\x")
        for n, data in enumerate(files)
    )
    alert = Alert(
        id="a-many",
        detection_source="WindowsDefenderAtp",
        severity="High",
        status="New",
        machine_id="m1",
        evidence=evidence,
    )
    defender = FakeDefender()
    defender.add_machine("m1")
    defender.add_alert(alert)
    connection = AzureStorageConnection(connection_string=azurite.connection_string)
    with AzureStore.from_connection(connection, prefix=unique_prefix()) as store:
        app = Application(Context(store, defender, FakeSandbox(), PipelineConfig()))
        ctx = app.ctx
        app.receive(alert.id, source="test")
        TriageWork(ctx).run(alert.id)
        stored = ctx.alerts.get(alert.id)
        assert stored is not None
        assert stored.record.state == AlertState.ACCEPTED, stored.record.cause
        assert len(stored.record.samples) == 100
        assert len(ctx.jobs.list()) == 100
        assert len(ctx.links.list()) == 100
