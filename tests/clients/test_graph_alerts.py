"""The Graph adapter against the Graph emulator over real sockets: Graph alerts in the core's terms
(the same as the MDE adapter gives for the same alert, so filters mean the same), listing with and
without nextLink, reading by ids, comments exactly as posted, and machines through the MDE API."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from joedefender.adapters.defender import DefenderAdapter, InvalidResponseError
from joedefender.adapters.graph import GraphAlertSource
from joedefender.domain.alerts import Alert
from joedefender.domain.triage import AlertFilters, triage
from tests.clients.graph_fixtures import (
    MDE,
    alert_source,
    calls,
    graph_alert,
    graph_client_for,
    graph_comments,
    graph_scenario,
    graph_world,
    mde_comments,
)
from tests.clients.mde_fixtures import client_for

WINDOW = (datetime(2024, 5, 1, 10, 0, tzinfo=UTC), datetime(2024, 5, 1, 11, 0, tzinfo=UTC))
ALERT_1 = graph_alert(1)["id"]
DESK, LAPTOP = "a" * 40, "b" * 40


def _without_machines(alert: Alert) -> Alert:
    """The alert as the MDE API can say it: one machine per alert, none per evidence item."""
    return dataclasses.replace(alert, evidence=tuple(dataclasses.replace(e, machine_id=None) for e in alert.evidence))


def test_graph_alerts_are_the_core_alerts_the_mde_adapter_gives_for_the_same_alerts():
    with graph_world() as emu, alert_source(emu) as graph, client_for(emu) as mde_client:
        mde = DefenderAdapter(mde_client)
        through_graph = {a.id: a for a in graph.list_alerts(*WINDOW)}
        through_mde = {a.id: a for a in mde.list_alerts(*WINDOW)}
    assert set(through_graph) == {graph_alert(n)["id"] for n in (1, 2)}  # MDE's, listed, not standalone/tuned
    for alert_id, alert in through_graph.items():
        assert _without_machines(alert) == through_mde[alert_id]
    first = through_graph[ALERT_1]
    assert (first.detection_source, first.status, first.severity, first.incident_id) == (
        "WindowsDefenderAv",
        "New",
        "High",
        "71",
    )
    assert first.machine_id == DESK
    file, process, url, user = first.evidence
    assert (file.entity_type, file.detection_status, file.machine_id) == ("File", "Prevented", DESK)
    assert (process.entity_type, process.file_name, process.file_path, process.machine_id) == (
        "Process",
        "loader.exe",
        "C:\\Temp",
        DESK,
    )
    assert process.sha256 is not None
    assert process.process_command_line == "loader.exe -q"  # the same through both APIs (above)
    assert (url.entity_type, url.url) == ("Url", "http://phish.example/login")
    assert user.entity_type == "User"
    assert through_graph[graph_alert(2)["id"]].machine_id == LAPTOP
    # the filters decide the same on both
    filters = AlertFilters()
    for alert_id, alert in through_graph.items():
        assert triage(_without_machines(alert), filters) == triage(through_mde[alert_id], filters)


def test_service_sources_choose_the_products_whose_alerts_are_listed():
    office = graph_alert(5)["id"]
    with graph_world() as emu, alert_source(emu, service_sources=(MDE, "microsoftDefenderForOffice365")) as graph:
        listed = {a.id: a for a in graph.list_alerts(*WINDOW)}
    assert office in listed
    mail = listed[office]
    assert mail.detection_source == "OfficeATP"
    assert mail.machine_id is None
    assert [(e.entity_type, e.url) for e in mail.evidence] == [("Url", "http://mail.example/x")]


def _many(count: int, *, same_time: bool = False) -> list[dict[str, object]]:
    """`count` alerts, updated one a second apart (or all at one instant)."""
    start = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    alerts = []
    for n in range(count):
        updated = start if same_time else start + timedelta(seconds=n)
        alerts.append(
            graph_alert(
                1,
                id=f"da6371000000000000{n:02d}_{n}",
                alertCreationTime=(start - timedelta(minutes=n % 7)).isoformat(),
                lastUpdateTime=updated.isoformat(),
            )
        )
    return alerts


@pytest.mark.parametrize(
    ("next_link", "same_time"), [(True, False), (False, False), (False, True)], ids=["links", "cursor", "ties"]
)
def test_listing_finds_every_alert_once_with_and_without_next_links(next_link: bool, same_time: bool):
    alerts = _many(23, same_time=same_time)
    raw = graph_scenario(alerts, next_link=next_link, max_top=4)  # pages shorter than the client asks for
    with graph_world(raw) as emu, graph_client_for(emu) as client:
        listed = [a.id for a in client.list_alerts(*WINDOW, page_size=10)]
        made = calls(emu, "alerts_v2.list")
    assert sorted(listed) == sorted(a["id"] for a in alerts)  # type: ignore[type-var]
    assert len(listed) == len(set(listed))
    if next_link:
        assert made == 6  # 23 alerts, 4 a page: the first call and five links
    else:
        assert made <= 40  # halving the window, then $skip within a second: bounded


def test_reading_by_ids_leaves_out_unknown_and_unlisted_ones():
    wanted = [ALERT_1, "da000000000000000000_0", graph_alert(3)["id"], ALERT_1]
    with graph_world() as emu, alert_source(emu) as graph:
        found = graph.get_alerts(wanted)
        assert graph.get_alert(ALERT_1).id == ALERT_1
    assert [a.id for a in found] == [ALERT_1]  # the standalone alert 3 is not in alerts_v2


def test_comments_are_posted_exactly_as_given_and_read_back_through_both_apis():
    text = (
        "Joe Sandbox: MALICIOUS (score 92/100)\nFile: ïnvoice\u202egpj.exe <b>\nAnalysis: x\njoedefender ref sha256:ab"
    )
    with graph_world() as emu, alert_source(emu) as graph:
        graph.add_comment(ALERT_1, text)
        assert graph.get_alert(ALERT_1).comments == (text,)
        assert graph_comments(emu, ALERT_1) == [text]
        assert mde_comments(emu, ALERT_1) == [text]
        assert calls(emu, "alerts_v2.comments") == 1


def test_comment_alerts_posts_once_per_alert():
    second = graph_alert(2)["id"]
    with graph_world() as emu, alert_source(emu) as graph:
        graph.comment_alerts([ALERT_1, second, ALERT_1], "same text")
        assert calls(emu, "alerts_v2.comments") == 2
        assert [graph_comments(emu, i) for i in (ALERT_1, second)] == [["same text"], ["same text"]]


def test_classification_goes_through_graphs_update_in_graphs_values():
    with graph_world() as emu, alert_source(emu) as graph:
        graph.classify_alert(ALERT_1, "TruePositive", "Malware")
        alert = graph.get_alert(ALERT_1)
    assert (alert.classification, alert.determination) == ("TruePositive", "Malware")


def test_machines_and_live_response_go_through_the_mde_api_by_mde_device_id():
    with graph_world() as emu, alert_source(emu) as graph:
        alert = graph.get_alert(graph_alert(2)["id"])
        assert alert.machine_id is not None
        [machine] = graph.get_machines([alert.machine_id])
        assert machine.id == LAPTOP
        assert graph.list_actions(LAPTOP) == []
        assert calls(emu, "alerts_v2.get") == 1
    assert isinstance(graph, GraphAlertSource)


def test_a_next_link_off_the_graph_host_is_not_followed():
    """The bearer token goes with every request: a link elsewhere is an unreadable answer."""
    with graph_world() as emu, graph_client_for(emu) as client:
        for link in ("https://evil.example/v1.0/security/alerts_v2", f"{emu.graph.url}.evil.example/v1.0/x"):
            with pytest.raises(InvalidResponseError):
                client._next_page(link)
        assert calls(emu, "alerts_v2.list") == 0
