"""Attacker text in comments: shown escaped and bounded, and never able to forge our marker."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from joedefender.domain.comments import MAX_COMMENT, has_marker, marker, render_failure, render_verdict
from joedefender.domain.text import shown
from joedefender.domain.verdicts import Verdict

SHA_A = hashlib.sha256(b"a").hexdigest()
SHA_B = hashlib.sha256(b"b").hexdigest()
VERDICT = Verdict(detection="clean", score=3, webid="1", link="https://joe.example/analysis/1/0/html")


def _comment(file_name: str, sha256: str = SHA_A, verdict: Verdict = VERDICT) -> str:
    return render_verdict(verdict, sample_key=f"sha256:{sha256}", subject=sha256, file_name=file_name, reused=False)


def test_a_file_name_carrying_another_samples_marker_does_not_count_as_that_comment() -> None:
    text = _comment(f"joedefender ref sha256:{SHA_B}.sh")
    assert has_marker([text], f"sha256:{SHA_A}")
    assert not has_marker([text], f"sha256:{SHA_B}")


def test_a_file_name_with_newlines_cannot_add_lines() -> None:
    text = _comment(f"x.exe\nJoe Sandbox: CLEAN (score 0/100)\n{marker('sha256:' + SHA_B)}")
    lines = text.splitlines()
    assert lines[0] == "Joe Sandbox: CLEAN (score 3/100)"
    assert [line for line in lines if line.startswith("Joe Sandbox:")] == [lines[0]]
    assert "File: x.exe\\nJoe Sandbox: CLEAN (score 0/100)\\njoedefender ref" in text
    assert not has_marker([text], f"sha256:{SHA_B}")


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("invoice\u202eexe.pdf", "invoice\\u{202E}exe.pdf"),  # right-to-left override
        ("a\u2066b\u2069", "a\\u{2066}b\\u{2069}"),  # bidi isolates
        ("pay\u200bpal.exe", "pay\\u{200B}pal.exe"),  # zero-width space
        ("x\u200d\ufeff.exe", "x\\u{200D}\\u{FEFF}.exe"),  # zero-width joiner, BOM
        ("bell\x07\x1b[31m.exe", "bell\\u{0007}\\u{001B}[31m.exe"),  # controls, an ANSI escape
        ("a\rb\tc", "a\\rb\\tc"),
        ("line\u2028sep", "line\\u{2028}sep"),
        ("C:\\Users\\a\\x.exe", "C:\\Users\\a\\x.exe"),  # backslashes stay
        ("naïve résumé.exe", "naïve résumé.exe"),  # visible non-ASCII stays
    ],
)
def test_hidden_characters_are_shown_escaped(name: str, escaped: str) -> None:
    assert f"File: {escaped}" in _comment(name).splitlines()


def test_every_value_is_capped_and_the_comment_stays_under_the_limit() -> None:
    huge = "A" * 100_000
    verdict = Verdict(
        detection="malicious",
        score=99,
        threat_names=(huge, huge),
        classification=huge,
        systems=(huge,),
        webid="1",
        link="https://joe.example/" + huge,
    )
    url = "http://x.example/" + huge
    texts = [
        _comment(huge, verdict=verdict),
        render_verdict(verdict, sample_key="url:abc", subject=url, file_name=huge, reused=True),
        render_failure(sample_key="url:abc", subject=url, file_name=huge, reason=huge),
    ]
    for text in texts:
        assert len(text) < MAX_COMMENT
        assert all(len(line) <= 1600 for line in text.splitlines())
        assert "…" in text


@given(st.text(max_size=400))
def test_no_text_makes_a_line_or_hides_a_character(value: str) -> None:
    out = shown(value, 300)
    assert len(out) <= 300
    assert "\n" not in out
    assert "\r" not in out
    assert not any(ch in out for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u200e\u200f")
    text = _comment(value)
    assert has_marker([text], f"sha256:{SHA_A}")
    assert not has_marker([text], f"sha256:{SHA_B}")


@pytest.mark.parametrize("pad", [" ", "\u00a0", "\u3000", "\u2003", "\u3164", "\u2800", " \u2009\u00a0"])
def test_a_padded_file_name_cannot_wrap_a_fake_verdict_onto_a_line_of_its_own(pad: str) -> None:
    # A narrow portal view wraps at spaces: 200 blanks would put the fake verdict at a line's start.
    text = _comment("invoice.exe" + pad * 200 + "Joe Sandbox: CLEAN (score 0/100)")
    [file_line] = [line for line in text.splitlines() if line.startswith("File: ")]
    assert file_line.startswith("File: invoice.exe")
    assert "  " not in file_line
    assert len(file_line) < 80


def test_indicator_texts_show_format_characters_escaped_and_stay_bounded() -> None:
    from datetime import UTC, datetime

    from joedefender.domain.indicators import IndicatorPolicy, render_indicator

    verdict = Verdict(
        detection="malicious",
        score=90,
        webid="1\u202e",
        link="https://joe.example/analysis/1" + "\u200b" * 5000,
        threat_names=("Emo\u202etet" + " " * 200 + "x", "\x1b[2J"),
    )
    indicator = render_indicator(
        IndicatorPolicy(enabled=True),
        verdict,
        "DomainName",
        "c2.evil.example",
        sample="http://evil.example/\u2066" + "a" * 10_000,
        alert_id="a\nb",
        expires_at=datetime.now(UTC),
    )
    for text in (indicator.title, indicator.description):
        assert not any(ch in text for ch in "\u202e\u200b\u2066\x1b\n")
    assert "Emo\\u{202E}tet x" in indicator.title
    assert len(indicator.title) <= 200
    assert len(indicator.description) <= 1000
