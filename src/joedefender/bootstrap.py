"""The composition root: builds the connector's parts from the settings.

The adapters take endpoints, credentials and options (as Azure SDK clients do) and never read
the settings; this module is where the settings meet them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from joedefender.adapters.defender.auth import TokenProvider, build_credential
from joedefender.adapters.defender.client import DEFAULT_RETRY as DEFENDER_RETRY
from joedefender.adapters.defender.client import DefenderClient
from joedefender.adapters.defender.limiter import RateLimiter
from joedefender.adapters.joe.client import DEFAULT_TIMEOUT, JoeSandboxClient
from joedefender.adapters.joe.retry import DEFAULT_RETRY as JOE_RETRY
from joedefender.settings import Settings

# --- clients from settings --------------------------------------------------------------------


def token_provider(settings: Settings) -> TokenProvider:
    """Defender API tokens for the app registration the settings name; the client secret is
    blanked out of whatever the token endpoint answers."""
    return TokenProvider(
        lambda: build_credential(
            settings.azure_tenant_id,
            settings.azure_client_id,
            settings.azure_client_secret,
            authority_host=settings.azure_authority_host,
            ca_bundle=settings.tls_ca_bundle,
        ),
        redact=(settings.azure_client_secret,),
    )


def defender_client(settings: Settings, *, time_scale: float = 1.0) -> DefenderClient:
    """`time_scale` (real seconds per documented second) shrinks the limiter's windows to match
    an emulator running a scaled clock; leave it at 1 for a real tenant."""
    return DefenderClient(
        settings.defender_api_base_url,
        token_provider(settings),
        ca_bundle=settings.tls_ca_bundle,
        retry=replace(
            DEFENDER_RETRY,
            max_retries=settings.defender_api_max_retry,
            budget=settings.defender_api_retry_timeout.total_seconds(),
        ),
        limiter=RateLimiter(time_scale=time_scale),
    )


def sandbox_client(
    settings: Settings,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    base_delay: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> JoeSandboxClient:
    """`base_delay` is the first retry's wait (seconds) before jitter; tests shrink it."""
    return JoeSandboxClient(
        settings.joe_sandbox_api_url,
        settings.joe_sandbox_api_key,
        accept_tac=settings.joe_sandbox_accept_tac,
        timeout=timeout,
        retry=replace(
            JOE_RETRY,
            max_retries=settings.joe_sandbox_api_max_retry,
            budget=settings.joe_sandbox_api_retry_timeout.total_seconds(),
            first=base_delay,
        ),
        verify_ssl=str(settings.tls_ca_bundle) if settings.tls_ca_bundle is not None else True,
        analysis_parameters=settings.joe_sandbox_analysis_parameters,
        systems=settings.joe_sandbox_systems,
        sleep=sleep,
    )
