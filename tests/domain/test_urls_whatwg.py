"""URLs are read as browsers read them: a table written from the WHATWG URL standard's rules, and a
property test against a WHATWG reference implementation (ada, the parser Node.js uses, through
its Python bindings `ada-url`, a test-only dependency)."""

from __future__ import annotations

import re

import ada_url
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joedefender.domain.hosts import parse_ip
from joedefender.domain.samples import InvalidSampleError, SampleKey, normalise_url, validated_url
from joedefender.domain.urls import MAX_URL, InvalidPort, UrlError, parse_web_url

# (input, the URL a browser opens); each row names the standard's rule it shows.
READ_AS_BROWSERS_DO = [
    # `\` is `/` in special schemes: the two phishing URLs
    ("http://evil.example\\@microsoft.com/", "http://evil.example/@microsoft.com/"),
    ("http://microsoft.com\\@evil.example/", "http://microsoft.com/@evil.example/"),
    ("http:\\\\evil.example\\a\\b", "http://evil.example/a/b"),
    ("http://x.example/a?b\\c", "http://x.example/a?b\\c"),  # ...but not in the query
    # any number of slashes (of either kind) after the scheme
    ("http:evil.example/x", "http://evil.example/x"),
    ("https:///\\/evil.example", "https://evil.example/"),
    # userinfo ends at the last @, before the host
    ("http://microsoft.com@evil.example/", "http://microsoft.com@evil.example/"),
    ("http://a@b@evil.example/", "http://a%40b@evil.example/"),
    ("http://user:pa:ss@evil.example/", "http://user:pa%3Ass@evil.example/"),
    # IPv4 number forms: fewer parts, octal, hexadecimal, one number
    ("http://127.1/", "http://127.0.0.1/"),
    ("http://0x7f.0.0.1/", "http://127.0.0.1/"),
    ("http://0177.0.0.1/", "http://127.0.0.1/"),
    ("http://2130706433/", "http://127.0.0.1/"),
    ("http://0x7f000001/", "http://127.0.0.1/"),
    ("http://10.0x10.1/", "http://10.16.0.1/"),
    ("http://192.168.1.1./", "http://192.168.1.1/"),
    ("http://0/", "http://0.0.0.0/"),
    # the host is percent-decoded and lowercased; IDN to Punycode
    ("HTTP://EVIL.%45xample/", "http://evil.example/"),
    ("http://127.0.0.%31/", "http://127.0.0.1/"),
    ("http://bücher.example/", "http://xn--bcher-kva.example/"),
    ("http://xn--bcher-kva.example/", "http://xn--bcher-kva.example/"),
    # IPv6: compressed, lowercase, no dotted tail
    ("http://[0:0:0:0:0:0:0:1]/", "http://[::1]/"),
    ("http://[::FFFF:10.0.0.1]/", "http://[::ffff:a00:1]/"),
    ("http://[2002:A00:1::]:8080/", "http://[2002:a00:1::]:8080/"),
    # ports: the default one dropped, leading zeros, an empty port
    ("https://evil.example:443/", "https://evil.example/"),
    ("http://evil.example:0080/", "http://evil.example/"),
    ("http://evil.example:/", "http://evil.example/"),
    ("http://evil.example:8080", "http://evil.example:8080/"),
    # tabs and newlines removed anywhere; C0 controls and spaces trimmed at the ends
    ("\x00 http://ev\til.exa\nmple/a\rb \x1f", "http://evil.example/ab"),
    # dot segments, also percent-encoded
    ("http://evil.example/a/../b/./c", "http://evil.example/b/c"),
    ("http://evil.example/a/%2e%2E/b", "http://evil.example/b"),
    ("http://evil.example/..", "http://evil.example/"),
    # percent-encode sets of path, query and fragment
    ('http://evil.example/a b<>"`{}^', "http://evil.example/a%20b%3C%3E%22%60%7B%7D%5E"),
    ("http://evil.example/?a b'<>`", "http://evil.example/?a%20b%27%3C%3E`"),
    ("http://evil.example/#a b<>`", "http://evil.example/#a%20b%3C%3E%60"),
    ("http://evil.example/ü?ü#ü", "http://evil.example/%C3%BC?%C3%BC#%C3%BC"),
    ("http://evil.example/a\x01b", "http://evil.example/a%01b"),
    # no scheme: read as http:// (Defender's evidence sometimes omits it; the standard refuses it)
    ("evil.example/x", "http://evil.example/x"),
    ("evil.example:8080/x", "http://evil.example:8080/x"),
]

REFUSED = [
    ("ftp://evil.example/", "not an http(s) URL"),
    ("javascript://evil.example/%0aalert(1)", "not an http(s) URL"),
    ("http://", "no host"),
    ("http://user@/", "credentials and no host"),
    ("http://:80/", "port and no host"),
    ("http://evil.example:65536/", "invalid port"),
    ("http://evil.example:8o/", "invalid port"),
    ("http://evil.example:99999999999999999999/", "invalid port"),
    ("http://1.2.3.4.5/", "5 numbers"),
    ("http://1.2.3.09/", "no number"),
    ("http://4294967296/", "out of range"),
    ("http://256.0.0.1/", "out of range"),
    ("http://evil example/", "forbidden character U+0020"),
    ("http://evil%20example/", "forbidden character U+0020"),
    ("http://ev<il.example/", "forbidden character U+003C"),
    ("http://ev%00il.example/", "forbidden character U+0000"),
    ("http://[::1/", "closing bracket"),
    ("http://[::1%eth0]/", "IPv6"),
    ("http://[1:2:3:4:5:6:7:8:9]/", "IPv6"),
    ("http://a..b\u00fc/", "internationalised name"),
    ("http://" + "a" * 300 + ".example/", "DNS allows"),
    ("http://x.example/\ud800", "surrogate"),
    ("http://x.example/" + "a" * MAX_URL, "characters"),
]


@pytest.mark.parametrize(("given_url", "opened"), READ_AS_BROWSERS_DO)
def test_urls_are_read_as_the_standard_says(given_url: str, opened: str) -> None:
    assert validated_url(given_url) == opened
    reference = given_url if given_url.lower().lstrip("\x00 ").startswith("http") else f"http://{given_url}"
    assert ada_url.URL(reference).href == opened  # the table agrees with the reference


@pytest.mark.parametrize(("given_url", "reason"), REFUSED)
def test_urls_no_browser_opens_are_refused_with_the_reason(given_url: str, reason: str) -> None:
    with pytest.raises(InvalidSampleError, match=re.escape(reason)):
        validated_url(given_url)


def test_an_invalid_port_is_its_own_kind_of_refusal() -> None:
    with pytest.raises(InvalidPort):
        parse_web_url("http://x.example:1234567/")


def test_the_phishing_urls_become_jobs_on_the_host_the_browser_opens() -> None:
    first = SampleKey.for_url("http://evil.example\\@microsoft.com/")
    assert first.value == "http://evil.example/@microsoft.com/"
    assert SampleKey.for_url("http://microsoft.com\\@evil.example/").value == "http://microsoft.com/@evil.example/"
    # one job per resource: case, default port, fragment and `\` do not make another
    assert SampleKey.for_url("HTTP://Evil.Example:80\\@microsoft.com/#top") == first


def test_the_refusal_names_the_url_safely() -> None:
    with pytest.raises(InvalidSampleError) as caught:
        validated_url("ftp://x\x1b[2J\u202e" + "y" * 500)
    message = str(caught.value)
    assert "\x1b" not in message
    assert "\u202e" not in message
    assert "\\u{001B}" in message
    assert len(message) < 300


# --- the property: never a host (or URL) that WHATWG parsing would not yield -------------------

_PIECES = st.sampled_from(
    ["a", "B", "x", "0", "1", "7", "9", "f", "x7f", "0x", "00", "255", "256", ".", "..", "%2e", "%41",
     "%00", "%zz", "%", ":", "::", "@", "\\", "/", "//", "?", "#", "[", "]", " ", "\t", "\n", "\x00",
     "\x1b", "-", "_", "xn--", "xn--bcher-kva", "ü", "ß", "℡", "\u200b", "\u202e", "\u00ad", "\ufeff",
     "\u3002", "\uff45", "\u2603", "^", "|", "<", "'", '"', "`", "{", "~", "ff", "ffff", "1.2.3.4", "0177", "0x7F"]
)  # fmt: skip
_TEXT = st.lists(_PIECES, max_size=12).map("".join)
_SCHEME = st.sampled_from(["http://", "https://", "HTTP://", "hTTps:", "http:\\\\", "http:/\\/", "http:", ""])
_HOST = st.one_of(
    _TEXT,
    st.lists(st.sampled_from(["0x7f", "0177", "127", "1", "0", "255", "4294967295", "0xffffffff", "08", ""]),
             min_size=1, max_size=5).map(".".join),
    st.lists(st.sampled_from(["", "0", "1", "ffff", "a00", "2002", "1.2.3.4", "64", "ff9b"]), min_size=2,
             max_size=9).map(lambda parts: "[" + ":".join(parts) + "]"),
    st.from_regex(r"[a-zA-Z0-9-]{1,10}(\.[a-zA-Z0-9-]{1,10}){0,3}", fullmatch=True),
)  # fmt: skip
_URL = st.tuples(
    _SCHEME,
    st.one_of(st.just(""), _TEXT.map(lambda t: t + "@")),
    _HOST,
    st.one_of(st.just(""), st.from_regex(r":[0-9]{0,6}", fullmatch=True), _TEXT.map(lambda t: ":" + t)),
    _TEXT,
).map("".join)


def _reference(text: str) -> ada_url.URL | None:
    try:
        return ada_url.URL(text)
    except ValueError:
        return None


@settings(max_examples=1000, deadline=None)
@given(_URL)
def test_our_parser_never_yields_a_url_whatwg_would_not(text: str) -> None:
    try:
        ours = parse_web_url(text)
    except UrlError:
        return  # refusing is always allowed: only a different reading is not
    stripped = text.strip("".join(chr(c) for c in range(0x21))).replace("\t", "").replace("\n", "").replace("\r", "")
    scheme = stripped.split(":", 1)[0].lower() if ":" in stripped else ""
    reference = _reference(text if scheme in ("http", "https") else "http://" + stripped)
    assert reference is not None, f"WHATWG refuses {text!r}, we read {ours.href!r}"
    assert ours.host.text == reference.hostname
    assert ours.href == reference.href


@settings(max_examples=500, deadline=None)
@given(_URL)
def test_normalise_url_never_yields_a_host_whatwg_would_not(text: str) -> None:
    try:
        key = normalise_url(text)
    except InvalidSampleError:
        return
    submitted = validated_url(text)
    reference = _reference(submitted)
    assert reference is not None
    assert reference.href == submitted  # what is submitted reads the same to the reference
    normalised = _reference(key)
    assert normalised is not None
    assert normalised.hostname == reference.hostname
    assert normalised.href == key


@settings(max_examples=500, deadline=None)
@given(_HOST)
def test_addresses_are_read_in_every_spelling_a_browser_accepts(text: str) -> None:
    ours = parse_ip(text)
    bracketed = f"[{text}]" if ":" in text and not text.startswith("[") else text  # an IPv6 IOC has none
    reference = _reference(f"http://{bracketed}/")
    if ours is None:
        return
    assert reference is not None
    assert reference.host_type in (ada_url.HostType.IPV4, ada_url.HostType.IPV6)
    shown = f"[{reference.hostname.strip('[]')}]" if ours.version == 6 else reference.hostname
    assert parse_ip(shown) == ours
