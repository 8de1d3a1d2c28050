"""The incident step on in-memory ports: what the emulator tests cannot set up cheaply. An incident
id that is not a plain id, an incident Graph no longer knows, a sample that could not be analysed,
a triage that adds a sample while the step saves, and a comment whose answer was lost."""

from __future__ import annotations

from joedefender.domain.comments import MARKER_PREFIX
from joedefender.domain.errors import Transient
from joedefender.domain.jobs import LinkState
from joedefender.pipeline.config import PipelineConfig
from tests.fakes import FakeIncidents, url_alert
from tests.pipeline.test_steps import Rig

_ON = PipelineConfig(incident_tags=True, incident_comments=True)
_URL_A, _URL_B = "http://phish.example/a", "http://phish.example/b"


def _rig(*incident_ids: str) -> Rig:
    rig = Rig(config=_ON, incidents=FakeIncidents(*incident_ids))
    rig.sandbox.verdicts[_URL_A] = ("malicious", 80)
    rig.sandbox.verdicts[_URL_B] = ("suspicious", 55)
    return rig


def _ours(rig: Rig, incident_id: str) -> list[str]:
    assert rig.incidents is not None
    return [c for c in rig.incidents.incidents[incident_id].comments if MARKER_PREFIX in c]


def test_an_incident_id_that_is_not_a_plain_id_is_never_used() -> None:
    rig = _rig()
    rig.receive(url_alert("a1", _URL_A, incident_id="../../x?y"))
    rig.drain()
    assert rig.ctx.incident_verdicts.list() == []
    assert ("incident", "incident skipped") in rig.history("alert:a1")
    assert rig.incidents is not None
    assert rig.incidents.calls == {}
    assert [link.record.state for link in rig.ctx.links.list()] == [LinkState.COMMENTED]  # the alert's own


def test_an_incident_graph_does_not_know_is_noted_and_left() -> None:
    rig = _rig()  # no incident 7 there
    rig.receive(url_alert("a1", _URL_A, incident_id="7"))
    rig.drain()
    assert rig.history("incident:7") == [("incident", "incident not found")]  # once, no retries


def test_two_samples_one_incident_the_worst_tag_and_a_comment_each() -> None:
    rig = _rig("7")
    rig.receive(url_alert("a1", _URL_B, incident_id="7"), url_alert("a2", _URL_A, incident_id="7"))
    rig.drain()
    assert rig.incidents is not None
    assert rig.incidents.incidents["7"].tags == ("JoeSandbox:malicious",)
    assert sorted(c.splitlines()[0] for c in _ours(rig, "7")) == [
        "Joe Sandbox: MALICIOUS (score 80/100)",
        "Joe Sandbox: SUSPICIOUS (score 55/100)",
    ]


def test_a_sample_not_analysed_gets_its_reason_on_the_incident_and_names_no_tag() -> None:
    rig = _rig("7")
    rig.sandbox.fail("submit_url", Transient("Joe is down"), times=1000)
    rig.receive(url_alert("a1", _URL_A, incident_id="7"))
    rig.drain(max_steps=5000)
    assert rig.incidents is not None
    assert rig.incidents.incidents["7"].tags == ()
    (comment,) = _ours(rig, "7")
    assert comment.startswith("Joe Sandbox: not analysed")


def test_a_comment_whose_answer_was_lost_is_found_by_its_marker_and_not_written_again() -> None:
    rig = _rig("7")
    assert rig.incidents is not None
    rig.incidents.fail("comment_incident", Transient("dropped", maybe_applied=True), after=True)
    rig.receive(url_alert("a1", _URL_A, incident_id="7"))
    rig.drain()
    assert len(_ours(rig, "7")) == 1
    assert rig.incidents.calls["comment_incident"] == 1
    assert ("incident comment", "already commented") in rig.history("incident:7")


def test_a_sample_triage_adds_while_the_step_saves_is_kept() -> None:
    """Triage adds a sample to the incident's record between the step's read and its save: the
    save is made again on the record as it is now, so neither the new sample nor the comment is lost."""
    rig = _rig("7")
    incidents = rig.incidents
    assert incidents is not None
    comment = incidents.comment_incident
    joined: list[bool] = []

    def with_a_triage_meanwhile(incident_id: str, text: str) -> None:
        comment(incident_id, text)
        if not joined:  # as triage's join_incident would, committed before the step's save
            stored = rig.ctx.incident_verdicts.get(incident_id)
            assert stored is not None
            data = stored.record.model_dump(mode="json")
            data["samples"]["url:late"] = {"state": "pending"}
            rig.store.update(stored.doc, data)
            joined.append(True)

    incidents.comment_incident = with_a_triage_meanwhile  # type: ignore[method-assign]
    rig.receive(url_alert("a1", _URL_A, incident_id="7"))
    rig.drain()
    stored = rig.ctx.incident_verdicts.get("7")
    assert stored is not None
    assert joined
    assert "url:late" in stored.record.samples
    commented = [key for key, s in stored.record.samples.items() if s.state == LinkState.COMMENTED]
    assert len(commented) == 1
    assert len(_ours(rig, "7")) == 1
    # Saved on the fresh record in the same step: no failed step, no read-back of the comments.
    assert [outcome for step, outcome in rig.history("incident:7") if step == "incident comment"] == ["commented"]
