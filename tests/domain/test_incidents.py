"""The rules of our verdict tag on an incident."""

from __future__ import annotations

from joedefender.domain.incidents import is_ours, verdict_tag, with_verdict_tag, worst_detection


def test_our_tag_replaces_only_ours_and_keeps_the_order_of_others():
    assert with_verdict_tag(["VIP", "JoeSandbox:clean", "Finance"], "JoeSandbox:malicious") == (
        "VIP",
        "Finance",
        "JoeSandbox:malicious",
    )
    assert with_verdict_tag([], verdict_tag("suspicious")) == ("JoeSandbox:suspicious",)
    assert with_verdict_tag(["JOESANDBOX:clean", "joesandbox:x"], "JoeSandbox:clean") == ("JoeSandbox:clean",)


def test_tags_that_only_look_like_ours_are_others():
    for tag in ("JoeSandbox", "JoeSandbox-notes", "Joe Sandbox: malicious", "xJoeSandbox:malicious", ""):
        assert not is_ours(tag)
    assert with_verdict_tag(["JoeSandbox-notes"], "JoeSandbox:clean") == ("JoeSandbox-notes", "JoeSandbox:clean")


def test_the_worst_verdict_is_the_most_severe_conclusive_one():
    assert worst_detection(["clean", "malicious", "suspicious"]) == "malicious"
    assert worst_detection(["clean", "suspicious", "unknown"]) == "suspicious"
    assert worst_detection(["clean"]) == "clean"
    assert worst_detection(["unknown"]) is None
    assert worst_detection([]) is None


def test_the_worst_verdict_of_a_generator_is_read_once_and_right():
    # The pipeline passes a generator over the incident's jobs: it can be read only once.
    assert worst_detection(d for d in ["clean", "malicious", "suspicious"]) == "malicious"
    assert worst_detection(iter(["suspicious", "clean"])) == "suspicious"
