"""Rules across settings: what no single setting's parser can see, such as a webhook that leaves
this machine without TLS or without a strong enough secret."""

from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from pydantic import SecretStr

from joedefender.domain.shared_secret import MIN_LENGTH as MIN_WEBHOOK_SECRET
from joedefender.domain.shared_secret import shared_secret_weakness
from joedefender.settings.network import is_loopback


class _WebhookAndJoe(Protocol):
    """The settings these rules read (the model has them, by these names)."""

    @property
    def webhook_bind_address(self) -> str: ...
    @property
    def webhook_secret(self) -> SecretStr | None: ...
    @property
    def webhook_tls_cert_file(self) -> Path | None: ...
    @property
    def webhook_tls_key_file(self) -> Path | None: ...
    @property
    def webhook_allow_plain_http(self) -> bool: ...
    @property
    def joe_sandbox_base_url(self) -> str: ...


def webhook_problems(settings: _WebhookAndJoe) -> list[tuple[str, str]]:
    """Off loopback the secret crosses a network, so it needs TLS (or a proxy in front that
    terminates it, said explicitly) and a secret strong enough not to be guessed."""
    problems = []
    if (settings.webhook_tls_cert_file is None) != (settings.webhook_tls_key_file is None):
        missing = "WebhookTlsKeyFile" if settings.webhook_tls_key_file is None else "WebhookTlsCertFile"
        problems.append((missing, "missing: WebhookTlsCertFile and WebhookTlsKeyFile go together"))
    if is_loopback(settings.webhook_bind_address):
        return problems
    if settings.webhook_tls_cert_file is None and not settings.webhook_allow_plain_http:
        problems.append(
            (
                "WebhookBindAddress",
                f"{settings.webhook_bind_address} is not loopback, and the webhook has no TLS: set "
                "WebhookTlsCertFile and WebhookTlsKeyFile, or WebhookAllowPlainHttp=true when a "
                "TLS-terminating proxy is in front",
            )
        )
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret is not None else ""
    if weakness := "missing" if not secret else shared_secret_weakness(secret):
        problems.append(
            (
                "WebhookSecret",
                f"{weakness}: a webhook on {settings.webhook_bind_address} needs a random shared secret of "
                f"at least {MIN_WEBHOOK_SECRET} characters; `joedefender secret` prints a fresh one",
            )
        )
    return problems


def warnings(settings: _WebhookAndJoe) -> list[str]:
    """Accepted but risky choices, for the host to log at start."""
    found = []
    joe_host = urlsplit(settings.joe_sandbox_base_url)
    if joe_host.scheme == "http" and not is_loopback(joe_host.hostname or ""):
        found.append(
            f"JoeSandboxBaseURL uses plain http to {joe_host.hostname}: the API key and the samples "
            "cross the network unencrypted"
        )
    plain = settings.webhook_tls_cert_file is None and settings.webhook_allow_plain_http
    if not is_loopback(settings.webhook_bind_address) and plain:
        found.append(
            f"the webhook serves plain http on {settings.webhook_bind_address} (WebhookAllowPlainHttp=true): "
            "only a TLS-terminating proxy in front may reach it"
        )
    return found
