"""http(s) URLs read as browsers read them: the WHATWG URL standard's parser for special schemes.

Python's `urlsplit` follows RFC 3986, where `\\` is an ordinary character: it reads
`http://evil.example\\@microsoft.com/` as a URL on microsoft.com, while every browser (and the
sandbox, which opens the URL in one) goes to evil.example, because the standard treats `\\` as
`/` in http(s) URLs. The connector therefore parses every URL with this module, which implements
the standard's basic URL parser for http and https with no base URL: leading and trailing C0
controls and spaces stripped, tabs and newlines removed, `\\` as `/`, any number of slashes
after the scheme, the last `@` ending the userinfo, the host parser of `joedefender.domain.hosts`,
ports, dot segments, and the standard's percent-encode sets. `WebUrl.href` is the standard's
serialisation, which every reader (RFC 3986 ones included) reads as the same host: it is what
the connector submits to Joe Sandbox and shows, so what is analysed is what the device opened.

A text without `://` and without an http(s) scheme is read as `http://` + text (Defender's URL
evidence sometimes omits the scheme), a departure from the standard, which refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from joedefender.domain.hosts import Host, HostError, parse_host

DEFAULT_PORTS = {"http": 80, "https": 443}
# Longer URLs are refused (browsers accept more; no page the connector should analyse needs it).
MAX_URL = 32_768

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_STRIPPED = "".join(chr(c) for c in range(0x21))
_TAB_OR_NEWLINE = str.maketrans("", "", "\t\n\r")
_AUTHORITY_END = re.compile(r"[/\\?#]")
# The standard's percent-encode sets, beyond the C0 controls and everything above U+007E.
_C0 = frozenset(chr(c) for c in range(0x20))
_FRAGMENT_SET = _C0 | frozenset(' "<>`')
_QUERY_SET = _C0 | frozenset(" \"#<>'")  # the special-query set (http and https)
_PATH_SET = _C0 | frozenset(' "#<>?^`{}')
_USERINFO_SET = _PATH_SET | frozenset("/:;=@[\\]|")
_SINGLE_DOT = frozenset({".", "%2e"})
_DOUBLE_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})


class UrlError(ValueError):
    """A URL that is not an http(s) URL a browser would open, with the reason."""


class InvalidPort(UrlError):
    """The port is not a number from 0 to 65535."""


@dataclass(frozen=True)
class WebUrl:
    """An http(s) URL as parsed: every part as the standard serialises it."""

    scheme: str
    host: Host
    port: int | None = None  # None: the scheme's default
    path: str = "/"
    query: str | None = None
    fragment: str | None = None
    username: str = ""
    password: str = ""

    @property
    def has_credentials(self) -> bool:
        return bool(self.username or self.password)

    @property
    def origin(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.scheme}://{self.host.text}{port}"

    @property
    def href(self) -> str:
        """The whole URL, serialised as the standard does (userinfo and fragment included)."""
        userinfo = ""
        if self.has_credentials:
            userinfo = self.username + (f":{self.password}" if self.password else "") + "@"
        port = "" if self.port is None else f":{self.port}"
        query = "" if self.query is None else f"?{self.query}"
        fragment = "" if self.fragment is None else f"#{self.fragment}"
        return f"{self.scheme}://{userinfo}{self.host.text}{port}{self.path}{query}{fragment}"

    @property
    def without_fragment(self) -> str:
        """What is sent to a server (a fragment never is): one spelling per resource."""
        query = "" if self.query is None else f"?{self.query}"
        return f"{self.origin}{self.path}{query}"


def parse_web_url(value: str) -> WebUrl:
    """The http(s) URL `value` is to a browser, or `UrlError` saying why it is none."""
    if len(value) > MAX_URL:
        raise UrlError(f"a URL of {len(value):,} characters (at most {MAX_URL:,} are read)")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise UrlError("a URL with a lone surrogate code point")
    text = value.strip(_STRIPPED).translate(_TAB_OR_NEWLINE)
    scheme_match = _SCHEME.match(text)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme in DEFAULT_PORTS:
        assert scheme_match is not None
        rest = text[scheme_match.end() :]
    elif "://" in text:
        raise UrlError(f"not an http(s) URL (scheme {scheme[:20] or 'missing'!r})")
    else:
        scheme, rest = "http", text  # no scheme: read as http://
    rest = rest.lstrip("/\\")
    end = _AUTHORITY_END.search(rest)
    authority, rest = (rest, "") if end is None else (rest[: end.start()], rest[end.start() :])
    userinfo, at, host_port = authority.rpartition("@")
    if at and not host_port:
        raise UrlError("a URL with credentials and no host")
    host_text, port = _host_and_port(host_port, scheme)
    try:
        host = parse_host(host_text)
    except HostError as exc:
        raise UrlError(f"a URL with {exc}") from None
    username, _, password = userinfo.partition(":")
    rest, _, fragment = rest.partition("#") if "#" in rest else (rest, "", None)
    rest, _, query = rest.partition("?") if "?" in rest else (rest, "", None)
    return WebUrl(
        scheme=scheme,
        host=host,
        port=port,
        path=_path(rest),
        query=None if query is None else _encoded(query, _QUERY_SET),
        fragment=None if fragment is None else _encoded(fragment, _FRAGMENT_SET),
        username=_encoded(username, _USERINFO_SET),
        password=_encoded(password, _USERINFO_SET),
    )


def _host_and_port(text: str, scheme: str) -> tuple[str, int | None]:
    """Split at the first `:` outside brackets; the port is digits only, at most 65535, and the
    scheme's default port is no port."""
    inside = False
    for index, ch in enumerate(text):
        if ch == "[":
            inside = True
        elif ch == "]":
            inside = False
        elif ch == ":" and not inside:
            host, digits = text[:index], text[index + 1 :]
            if not host:
                raise UrlError("a URL with a port and no host")
            if digits and not (digits.isascii() and digits.isdigit()):
                raise InvalidPort("a URL with an invalid port (not a number)")
            if digits and (len(digits.lstrip("0")) > 5 or int(digits) > 65535):
                raise InvalidPort("a URL with an invalid port (over 65535)")
            port = int(digits) if digits else None
            return host, None if port == DEFAULT_PORTS[scheme] else port
    if not text:
        raise UrlError("a URL with no host")
    return text, None


def _path(text: str) -> str:
    """The path with `\\` as `/`, dot segments resolved and the path percent-encode set applied."""
    segments: list[str] = []
    parts = text.replace("\\", "/").split("/")
    if parts and parts[0] == "":
        parts = parts[1:]  # the path's leading slash
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        folded = part.lower()
        if folded in _DOUBLE_DOT:
            if segments:
                segments.pop()
            if last:
                segments.append("")
        elif folded in _SINGLE_DOT:
            if last:
                segments.append("")
        else:
            segments.append(_encoded(part, _PATH_SET))
    return "/" + "/".join(segments)


def _encoded(text: str, reserved: frozenset[str]) -> str:
    """UTF-8 percent-encoding of the characters in `reserved` and all above U+007E."""
    if all(ch not in reserved and ch <= "\x7e" for ch in text):
        return text
    return "".join(ch if ch not in reserved and ch <= "\x7e" else _percent(ch) for ch in text)


def _percent(ch: str) -> str:
    return "".join(f"%{byte:02X}" for byte in ch.encode("utf-8"))
