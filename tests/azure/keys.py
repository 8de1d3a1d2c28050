"""The Functions host's access keys and its check of them, as documented (functions-bindings-http-
webhook-trigger.md, "Authorization level"; function-keys-how-to.md, "Understand keys"):

- a function key (`default`, or a named one) opens only the function it belongs to;
- a host key opens every function whose level is `function`;
- the master key (`_master`) opens every function, `admin` level ones only with it;
- `anonymous` needs no key.

The host cannot run here (azure-platform.md section 2), so what a key opens is read from the app's
indexed bindings (each HTTP trigger's `authLevel`) under these rules. `listKeys` stands in for
ARM's: `sites/functions/<name>` lists that function's keys, `sites/host/default` the host's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from tests.azure.functions import bindings_of


def _key() -> str:
    return secrets.token_urlsafe(30)


@dataclass
class DeployedKeys:
    """The keys of one deployed function app: made up, distinct, as the platform generates them."""

    functions: list[str]
    master: str = field(default_factory=_key)
    host: dict[str, str] = field(default_factory=lambda: {"default": _key()})
    function_keys: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.functions:
            self.function_keys.setdefault(name, {"default": _key()})

    @classmethod
    def of(cls, app: func.FunctionApp) -> DeployedKeys:
        return cls(functions=list(_http_levels(app)))

    def list_keys(self, resource: str, _api_version: str = "") -> dict[str, Any]:
        """ARM's `listKeys` on `<site>/functions/<name>` or `<site>/host/default`."""
        parts = resource.strip("/").split("/")
        if parts[-2:] == ["host", "default"]:
            return {"functionKeys": dict(self.host), "masterKey": self.master, "systemKeys": {}}
        if parts[-2] == "functions":
            return dict(self.function_keys[parts[-1]])  # KeyError: no such function deployed
        raise ValueError(f"listKeys is not modelled for {resource}")

    def opens(self, app: func.FunctionApp, function: str, key: str) -> bool:
        """Whether the host lets a request with this `x-functions-key` into `function`."""
        level = _http_levels(app)[function]
        if level == "ANONYMOUS" or key == self.master:
            return True
        if level == "ADMIN":
            return False
        return key in self.host.values() or key in self.function_keys[function].values()


def _http_levels(app: func.FunctionApp) -> dict[str, str]:
    """HTTP-triggered function name -> its authorisation level, as the host indexes it."""
    levels = {}
    for name, bindings in bindings_of(app).items():
        trigger = next((b for b in bindings if b["type"] == "httpTrigger"), None)
        if trigger is not None:
            levels[name] = str(trigger["authLevel"]).upper()
    return levels
