"""Cloud GPU provider clients behind one interface, chosen by provider name."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from admin.cloud.providers.base import (BilledCost, CreateRequest, InstanceState, ProviderAuthError,  # noqa: F401
                   ProviderClient, ProviderError, ProviderRefused)
from admin.cloud.providers.jarvislabs import JarvislabsClient
from admin.cloud.providers.runpod import RunpodClient
from admin.cloud.providers.vastai import VastClient

# The cloud providers, in display order: add a provider's client class here. Each declares its
# name, display name, base URL, key variable and storage rule as class attributes.
CLIENT_CLASSES: tuple[type[ProviderClient], ...] = (RunpodClient, VastClient, JarvislabsClient)
CLIENTS: dict[str, type[ProviderClient]] = {c.provider: c for c in CLIENT_CLASSES}
CLOUD_PROVIDERS = tuple(CLIENTS)


class UnknownProvider(ProviderError):
    pass


def check_provider(provider: str) -> str:
    if provider not in CLIENTS:
        raise UnknownProvider(f"unknown provider {provider!r}: expected one of {', '.join(CLIENTS)}")
    return provider


def resolve_api_key(provider: str, stored_key: str | None, key_var: str | None,
                    env: Mapping[str, str], home: Path | None = None) -> str | None:
    """Stored key first, then the configured env var, the SDK's env var, then the key the
    provider's CLI saved under `home` (runpod's ~/.runpod/config.toml)."""
    if stored_key:
        return stored_key
    client = CLIENTS.get(provider)
    for var in (key_var, client.key_var if client else None):
        if var and env.get(var):
            return env[var]
    if client is not None and home is not None:
        return client.key_from_local_config(home)
    return None


def make_client(provider: str, api_key: str | None, base_url: str | None = None, **kwargs) -> ProviderClient:
    return CLIENTS[check_provider(provider)](api_key or "", base_url, **kwargs)
