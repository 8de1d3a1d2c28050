"""Verdicts on the incident through Graph over real sockets: our tag replaces only our own earlier
tag (others' stay, in order), nothing is written when nothing changes, and incident comments are
exactly as posted, found by their marker after a lost answer."""

from __future__ import annotations

from typing import Any

import pytest

from joedefender.domain.comments import has_marker, marker
from joedefender.domain.errors import NotFound, Transient
from joedefender.domain.incidents import verdict_tag
from tests.clients.graph_fixtures import (
    add_fault,
    calls,
    graph_alert,
    graph_scenario,
    graph_world,
    incident,
    incidents_port,
)

SAMPLE = "sha256:" + "cd" * 32


def _scenario(tags: list[str]) -> dict[str, Any]:
    raw = graph_scenario()
    raw["graph"]["incidents"][0]["customTags"] = tags
    return raw


def test_our_tag_is_added_beside_others_and_replaces_only_our_earlier_one():
    raw = _scenario(["VIP", "JoeSandbox:clean", "Finance", "joesandbox:suspicious"])
    with graph_world(raw) as emu, incidents_port(emu) as incidents:
        tagged = incidents.tag_incident("71", verdict_tag("malicious"))
        assert tagged.tags == ("VIP", "Finance", "JoeSandbox:malicious")
        assert incident(emu, "71")["customTags"] == ["VIP", "Finance", "JoeSandbox:malicious"]
        assert calls(emu, "incidents.update") == 1
        again = incidents.tag_incident("71", verdict_tag("malicious"))  # nothing to change: no write
        assert again.tags == ("VIP", "Finance", "JoeSandbox:malicious")
        assert calls(emu, "incidents.update") == 1
        incidents.tag_incident("71", verdict_tag("suspicious"))
        assert incident(emu, "71")["customTags"] == ["VIP", "Finance", "JoeSandbox:suspicious"]


def test_an_untagged_incident_gets_our_tag_only():
    untagged = str(graph_alert(2)["incidentId"])
    with graph_world() as emu, incidents_port(emu) as incidents:
        assert incidents.get_incident(untagged).tags == ()
        incidents.tag_incident(untagged, verdict_tag("clean"))
        assert incident(emu, untagged)["customTags"] == ["JoeSandbox:clean"]


def test_incident_comments_are_exactly_as_posted_and_found_by_their_marker_after_a_lost_answer():
    text = f"Joe Sandbox: MALICIOUS (score 92/100)\nFile: a\u202eb.exe\n{marker(SAMPLE)}"
    with graph_world() as emu, incidents_port(emu) as incidents:
        add_fault(emu, service="graph", method="POST", path=r"/incidents/.*/comments$", drop=True, after=True, times=1)
        with pytest.raises(Transient) as caught:
            incidents.comment_incident("71", text)
        assert caught.value.maybe_applied
        read = incidents.get_incident("71")
        assert read.comments == ("looking", text)
        assert has_marker(read.comments, SAMPLE)
        assert calls(emu, "incidents.comments") == 1


def test_an_unknown_incident_is_not_found():
    with graph_world() as emu, incidents_port(emu) as incidents:
        with pytest.raises(NotFound):
            incidents.get_incident("999999")
        with pytest.raises(NotFound):
            incidents.tag_incident("999999", verdict_tag("malicious"))
