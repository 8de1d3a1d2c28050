"""The Azure host's pieces: the store on the Functions host's storage account, the tenant's API
budget shared by every instance through it, and its outbox relay."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from joedefender.adapters.azure.connection import AzureStorageConnection
from joedefender.adapters.azure.limits import TableRateLimiter
from joedefender.adapters.azure.store import RELAY_GRACE, AzureStore
from joedefender.adapters.defender.limiter import DOCUMENTED_RATES
from joedefender.adapters.graph import GRAPH_RATES
from joedefender.pipeline.clock import Clock
from joedefender.pipeline.ports import Store
from joedefender.settings import ConfigurationError, Settings

# Defender's documented limits as the Azure adapter takes them: family -> (per minute, per hour).
SHARED_RATES: Mapping[str, tuple[int, int | None]] = {
    str(family): (rate.per_minute, rate.per_hour) for family, rate in {**DOCUMENTED_RATES, **GRAPH_RATES}.items()
}


def open_azure_store(
    values: Mapping[str, str], *, prefix: str | None = None, clock: Callable[[], float] = time.time
) -> AzureStore:
    """The Azure store on the Functions host's storage account: `values` are app settings (the
    environment) with `AzureWebJobsStorage` or its identity form; the prefix is `prefix`, else
    `StoragePrefix`, else `joedefender`."""
    try:
        connection = AzureStorageConnection.from_settings(values)
    except ValueError as exc:
        raise ConfigurationError("AzureWebJobsStorage", str(exc)) from None
    chosen = prefix or values.get("StoragePrefix", "").strip() or Settings.model_fields["storage_prefix"].default
    try:
        return AzureStore.from_connection(connection, prefix=chosen, clock=clock)
    except ValueError as exc:
        raise ConfigurationError("StoragePrefix", str(exc)) from None


def shared_limiter(
    store: AzureStore, *, time_scale: float = 1.0, sleep: Callable[[float], None] = time.sleep
) -> TableRateLimiter:
    """Defender's and Graph's tenant limits as one budget for every instance that shares `store`'s
    account (their families apart: one limiter serves both clients)."""
    return store.rate_limiter(SHARED_RATES, time_scale=time_scale, sleep=sleep)


# Nominal seconds after a work item's lease ran out before the relay wakes it: its holder renews
# the lease every third of it while it lives, so by then it has died (or stalled, and its step
# stops at its next look at the lease).
LEASE_GRACE = 2.0


def outbox_relay(store: Store, clock: Clock) -> Callable[[], int] | None:
    """The Azure store's relay: the wake-ups a failed send or a crash kept from the queues are
    sent, items overdue by RELAY_GRACE whose message was lost are woken, and so are the items of
    instances that died holding them (LEASE_GRACE after their lease ran out)."""
    if not isinstance(store, AzureStore):
        return None
    return lambda: store.relay_outbox(clock.now(), grace=clock.real(RELAY_GRACE), lease_grace=clock.real(LEASE_GRACE))
