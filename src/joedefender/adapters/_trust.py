"""TLS trust for every outbound client: the system's roots, plus the `TlsCaBundle` CAs when set.

A user behind a TLS-inspecting proxy adds the proxy's CA; replacing the roots with it would
break every host the proxy does not inspect. httpx takes an `ssl.SSLContext`, so it gets
`truststore`'s (the operating system's own store) with the bundle loaded on top. requests (under
jbxapi and azure-identity) takes only a file path, so it gets one file: certifi's roots followed
by the bundle's CAs, written once per process and removed at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import ssl
import tempfile
import threading
from pathlib import Path

import certifi
import truststore

_combined: dict[Path, Path] = {}
_lock = threading.Lock()


def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """A client context on the system's trust store, with the bundle's CAs added."""
    context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context


def requests_verify(ca_bundle: Path | None) -> bool | str:
    """What requests' `verify` takes: True (certifi's roots) or one file of certifi's roots plus
    the bundle's CAs."""
    if ca_bundle is None:
        return True
    with _lock:
        found = _combined.get(ca_bundle)
        if found is None or not found.exists():
            found = _write_combined(ca_bundle)
            _combined[ca_bundle] = found
    return str(found)


def _write_combined(ca_bundle: Path) -> Path:
    roots = Path(certifi.where()).read_bytes()
    extra = ca_bundle.read_bytes()
    descriptor, name = tempfile.mkstemp(prefix="joedefender-ca-", suffix=".pem")
    with os.fdopen(descriptor, "wb") as out:
        out.write(roots.rstrip(b"\n") + b"\n" + extra)
    path = Path(name)
    atexit.register(_remove, path)
    return path


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
