"""Parsers of the settings that name places on the network or on disk: base URLs, hosts, the
webhook's bind address, PEM files. A URL never carries credentials, and none is ever echoed."""

import contextlib
import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BeforeValidator

from joedefender.settings.parsers import echo, plain_text

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def url(
    value: object, *, https_only: bool, bare_host: bool = False, strip_api: bool = False, http_anywhere: bool = False
) -> str:
    """Normalise a base URL: https (http only to this machine, unless `http_anywhere`), no trailing
    slash, no query."""
    text = plain_text(value)
    if "://" not in text:
        text = f"https://{text}"  # a bare host, as azure-identity's authority constants are
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise ValueError(f"{echo(text)} is not a URL") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password")  # nor echo them
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not host or not valid_host(host):
        raise ValueError(f"{echo(text)} is not a URL with a host (a valid host name or IP address)")
    if parts.port == 0:
        raise ValueError(f"{echo(text)} has port 0; give a port between 1 and 65535, or none")
    if scheme != "https" and not (scheme == "http" and not https_only and (http_anywhere or host in _LOCAL_HOSTS)):
        allowed = "https" if https_only else "https (http only for localhost or 127.0.0.1)"
        raise ValueError(f"{echo(text)} must use {allowed}")
    if parts.query or parts.fragment:
        raise ValueError(f"{echo(text)} must not have a query or fragment")
    path = parts.path.rstrip("/")
    if strip_api and path.lower().endswith("/api"):
        path = path[: -len("/api")].rstrip("/")
    if bare_host and path:
        raise ValueError(f"{echo(text)} must be a bare https://host, without a path")
    return f"{scheme}://{parts.netloc}{path}"


def valid_host(host: str) -> bool:
    """A DNS name (letters, digits, hyphens in dot-separated labels) or an IP address."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    name = host.removesuffix(".")
    return 0 < len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in name.split("."))


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) stays on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_address(value: object) -> str:
    text = plain_text(value)
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        if text.lower() == "localhost":
            return "127.0.0.1"
        raise ValueError(f"{echo(text)} is not an IP address (e.g. 127.0.0.1, 0.0.0.0 or ::)") from None


def pem_path(value: object, marker: bytes, what: str) -> Path | None:
    """A readable PEM file holding `marker`; the file's content is never echoed."""
    if value is None:
        return None
    if not isinstance(value, str | Path):
        raise ValueError("is not a file path")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"{echo(str(path))} does not exist or is not a file")
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{echo(str(path))} cannot be read ({exc.strerror})") from None
    if marker not in pem:
        raise ValueError(f"{echo(str(path))} holds no PEM {what}")
    return path


def pem_file(marker: bytes, what: str) -> BeforeValidator:
    return BeforeValidator(lambda value: pem_path(value, marker, what))


def authority_host(value: object) -> str:
    return url(value, https_only=True, bare_host=True)


def defender_url(value: object) -> str:
    return url(value, https_only=False)


# Microsoft Graph's hosts for alerts_v2 and incidents (GD includes/global-us.md: global, US Government
# L4 and L5); each is also the token audience of its cloud.
GRAPH_HOSTS = {
    "graph.microsoft.com": "global",
    "graph.microsoft.us": "US Government L4",
    "dod-graph.microsoft.us": "US Government L5 (DoD)",
}
GRAPH_GLOBAL = "https://graph.microsoft.com"
_GRAPH_CHINA = "microsoftgraph.chinacloudapi.cn"


def graph_url(value: object) -> str:
    """A Microsoft Graph base URL (`https://host`, a pasted `/v1.0` taken off). Graph gets a bearer
    token, so only Graph's own hosts are taken, and this machine (an emulator, a local proxy)."""
    text = url(value, https_only=False)
    parts = urlsplit(text)
    host, path = (parts.hostname or "").lower(), parts.path.rstrip("/")
    if path.lower() in ("/v1.0", "/beta"):
        text, path = text[: -len(path)], ""
    if host == _GRAPH_CHINA:
        raise ValueError(
            "is Microsoft Graph operated by 21Vianet, which does not offer the security alerts_v2 "
            "and incidents APIs (only global and US Government clouds do)"
        )
    if host not in GRAPH_HOSTS and not is_loopback(host):
        hosts = ", ".join(f"https://{name} ({cloud})" for name, cloud in GRAPH_HOSTS.items())
        raise ValueError(f"{echo(text)} is not a Microsoft Graph host: {hosts}")
    if path:
        raise ValueError(f"{echo(text)} must be the bare host, e.g. {GRAPH_GLOBAL}")
    return text.lower()  # scheme and host only: no case to keep


def graph_audience(base_url: str) -> str:
    """The token audience of a Graph base URL: its own cloud's host; this machine's (an emulator)
    gets the global one."""
    host = (urlsplit(base_url).hostname or "").lower()
    return f"https://{host}" if host in GRAPH_HOSTS else GRAPH_GLOBAL


def joe_url(value: object) -> str:
    """JoeAz's JoeSandboxBaseURL is the web base; a pasted API URL (…/api) is taken back to it.
    On-premise appliances are often served over plain http inside the network (JoeAz documents
    `http://<server>/joesandbox/index.php`), so http stays allowed here."""
    return url(value, https_only=False, strip_api=True, http_anywhere=True)


def ca_bundle(value: object) -> Path | None:
    return pem_path(value, b"-----BEGIN CERTIFICATE-----", "certificate (-----BEGIN CERTIFICATE-----)")
