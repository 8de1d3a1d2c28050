"""`joedefender check` with Graph in use: the Graph permissions the settings need, read from the
Graph token and tried with harmless calls, against the emulators over real sockets."""

from __future__ import annotations

from typing import Any

from joedefender.bootstrap.check import check as run_checks
from joedefender.bootstrap.check import graph_checks
from tests.clients.graph_fixtures import calls, graph_scenario, graph_world, settings_for

_VERDICTS = {"AlertSource": "graph", "DefenderIncidentTags": "true"}


def _rows(results: list[Any]) -> dict[str, tuple[bool, str]]:
    return {r.name: (r.ok, r.detail) for r in results}


def test_with_every_graph_permission_each_probe_passes_and_changes_nothing():
    with graph_world() as emu:
        rows = _rows(graph_checks(settings_for(emu, **_VERDICTS), time_scale=emu.scenario.time_scale))
        assert calls(emu, "alerts_v2.update") == 1  # an alert that does not exist: nothing changed
        assert calls(emu, "incidents.update") == 1
    assert rows["SecurityAlert.ReadWrite.All"] == (True, "granted")
    assert rows["SecurityIncident.ReadWrite.All"] == (True, "granted")
    assert rows["SecurityAlert.Read.All (list alerts_v2)"][0]
    assert rows["SecurityAlert.ReadWrite.All (update an alert)"] == (True, "allowed")
    assert rows["SecurityIncident.ReadWrite.All (tag an incident)"] == (True, "allowed")
    assert all(ok for ok, _ in rows.values())


def test_the_missing_graph_permissions_are_named():
    with graph_world(graph_scenario(permissions=["SecurityAlert.Read.All"])) as emu:
        rows = _rows(graph_checks(settings_for(emu, **_VERDICTS), time_scale=emu.scenario.time_scale))
    assert rows["SecurityAlert.ReadWrite.All"] == (False, "not granted to the app")
    assert rows["SecurityIncident.ReadWrite.All"] == (False, "not granted to the app")
    ok, detail = rows["SecurityAlert.ReadWrite.All (update an alert)"]
    assert not ok
    assert detail.startswith("forbidden: SecurityAlert.ReadWrite.All is missing: grant it")
    ok, detail = rows["SecurityIncident.ReadWrite.All (tag an incident)"]
    assert not ok
    assert "SecurityIncident.ReadWrite.All is missing" in detail
    assert rows["SecurityAlert.Read.All (list alerts_v2)"][0]


def test_graph_is_checked_only_when_used_and_incidents_only_when_verdicts_are_on():
    with graph_world() as emu:
        mde_only = _rows(run_checks(settings_for(emu), time_scale=emu.scenario.time_scale))
        alerts_only = _rows(graph_checks(settings_for(emu, AlertSource="graph"), time_scale=emu.scenario.time_scale))
        incidents_only = _rows(
            graph_checks(settings_for(emu, DefenderIncidentComments="true"), time_scale=emu.scenario.time_scale)
        )
    assert not any(name.startswith(("Graph", "Security")) for name in mde_only)
    assert "Alert.ReadWrite.All" in mde_only
    assert "SecurityAlert.ReadWrite.All" in alerts_only
    assert not any(name.startswith("SecurityIncident") for name in alerts_only)
    assert "SecurityIncident.ReadWrite.All" in incidents_only
    assert not any(name.startswith("SecurityAlert") for name in incidents_only)


def test_with_graph_as_the_source_the_mde_alert_permission_is_not_asked_for():
    with graph_world() as emu:
        rows = _rows(run_checks(settings_for(emu, AlertSource="graph"), time_scale=emu.scenario.time_scale))
    assert "Alert.ReadWrite.All" not in rows
    assert not any(name.startswith("Alert.Read.All") for name in rows)
    assert rows["Machine.LiveResponse"][0]  # collection still goes through the MDE API
    assert rows["SecurityAlert.ReadWrite.All"][0]
