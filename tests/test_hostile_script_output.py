"""The script output parsers (ScriptOutcome, LocateOutcome) on what a device controlled by an
attacker could send back: one pass, bounded memory, ContractError and nothing
else, every value that reaches a message or a history line bounded."""

from __future__ import annotations

import contextlib
import json
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from joedefender.endpoint.contract import (
    MAX_MESSAGE_CHARS,
    MAX_SCRIPT_OUTPUT_CHARS,
    ContractError,
    ScriptOutcome,
)
from joedefender.endpoint.locate_contract import LocateOutcome

PARSERS = [ScriptOutcome.from_script_output, LocateOutcome.from_script_output]
CLEANED = '{"joedefender":1,"status":"cleaned","message":""}'


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize(
    "output",
    [
        '{"joedefender":' + "[" * 100_000 + "]" * 100_000 + "}",  # deeper than any JSON parser goes
        '{"joedefender":1,"x":' + "{" * 50_000,
        "{" * 200_000,
    ],
)
def test_deeply_nested_lines_are_not_ours_and_never_a_recursion_error(parse: object, output: str) -> None:
    with pytest.raises(ContractError, match="no joedefender result line"):
        parse(output)  # type: ignore[operator]


@pytest.mark.parametrize("parse", PARSERS)
def test_output_beyond_what_our_scripts_print_is_refused_unread(parse: object) -> None:
    output = "WARNING: x\n" * (MAX_SCRIPT_OUTPUT_CHARS // 11) + CLEANED
    with pytest.raises(ContractError, match=f"more than the {MAX_SCRIPT_OUTPUT_CHARS}"):
        parse(output)  # type: ignore[operator]


def test_many_result_lines_are_counted_without_being_kept() -> None:
    line = '{"joedefender":1,"status":"cleaned","message":"' + "m" * 40 + '"}\n'
    output = line * (MAX_SCRIPT_OUTPUT_CHARS // len(line))
    tracemalloc.start()
    try:
        with pytest.raises(ContractError, match=rf"{MAX_SCRIPT_OUTPUT_CHARS // len(line)} joedefender result lines"):
            ScriptOutcome.from_script_output(output)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # one line at a time: the 1 MiB output itself is not copied, nor its 12,000 lines


def test_values_that_reach_messages_are_bounded() -> None:
    message = "x" * 100_000
    outcome = ScriptOutcome.from_script_output(json.dumps({"joedefender": 1, "status": "error", "message": message}))
    assert outcome.message == "x" * MAX_MESSAGE_CHARS
    with pytest.raises(ContractError, match="more than a Windows path") as refused:
        ScriptOutcome.from_script_output(json.dumps({"joedefender": 1, "status": "cleaned", "path": "p" * 40_000}))
    assert len(str(refused.value)) < 200
    for field in ("joedefender", "status", "source"):
        document = {"joedefender": 1, "status": "cleaned", field: "v" * 100_000}
        with pytest.raises(ContractError) as refused:
            ScriptOutcome.from_script_output(json.dumps(document))
        assert len(str(refused.value)) < 200, field
    located = {"joedefender": 1, "status": "error", "languageMode": "L" * 10_000, "message": message}
    outcome_located = LocateOutcome.from_script_output(json.dumps(located))
    assert len(outcome_located.language_mode) <= 40
    assert len(outcome_located.message) == MAX_MESSAGE_CHARS


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
_KEYS = st.sampled_from(
    ["joedefender", "status", "sha256", "size", "path", "source", "message", "languageMode", "resources", "entries"]
)
_DOCUMENT = st.dictionaries(_KEYS, _JSON | st.sampled_from([1, "found", "located", "cleaned", "quarantine"]))


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents=st.lists(_DOCUMENT, max_size=3), noise=st.lists(st.text(max_size=40), max_size=3))
def test_fuzzed_documents_raise_nothing_but_the_contract_error(
    documents: list[dict[str, object]], noise: list[str]
) -> None:
    output = "\n".join([*noise, *(json.dumps(d) for d in documents)])
    for parse in PARSERS:
        with contextlib.suppress(ContractError):
            parse(output)


@settings(max_examples=300, deadline=None, database=None)
@given(output=st.text(max_size=300))
def test_fuzzed_text_raises_nothing_but_the_contract_error(output: str) -> None:
    for parse in PARSERS:
        with contextlib.suppress(ContractError):
            parse(output)
