"""Cloud GPU provider clients behind one interface, chosen by provider name."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping

from admin.cloud.providers.base import (BilledCost, CreateRequest, InstanceState, ProviderAuthError,  # noqa: F401
                   ProviderClient, ProviderError, ProviderRefused)
from admin.cloud.providers.jarvislabs import JarvislabsClient
from admin.cloud.providers.runpod import RunpodClient
from admin.cloud.providers.vastai import VastClient

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

CLIENTS: dict[str, type[ProviderClient]] = {
    "runpod.io": RunpodClient,
    "vast.ai": VastClient,
    "jarvislabs.ai": JarvislabsClient,
}

# The env var each provider's own SDK/CLI reads.
DEFAULT_KEY_VARS = {"runpod.io": "RUNPOD_API_KEY", "vast.ai": "VAST_API_KEY", "jarvislabs.ai": "JL_API_KEY"}


class UnknownProvider(ProviderError):
    pass


def check_provider(provider: str) -> str:
    if provider not in CLIENTS:
        raise UnknownProvider(f"unknown provider {provider!r}: expected one of {', '.join(CLIENTS)}")
    return provider


def resolve_api_key(provider: str, stored_key: str | None, key_var: str | None,
                    env: Mapping[str, str], home: Path | None = None) -> str | None:
    """Stored key first, then the configured env var, the SDK's env var, then runpod's config file."""
    if stored_key:
        return stored_key
    for var in (key_var, DEFAULT_KEY_VARS.get(provider)):
        if var and env.get(var):
            return env[var]
    if provider == "runpod.io" and home is not None:
        # `runpod config` writes ~/.runpod/config.toml: [default] api_key = "..."
        try:
            data = tomllib.loads((home / ".runpod" / "config.toml").read_text())
        except (OSError, tomllib.TOMLDecodeError):
            return None
        key = (data.get("default") or {}).get("api_key")
        return key if isinstance(key, str) and key else None
    return None


def make_client(provider: str, api_key: str | None, base_url: str | None = None, **kwargs) -> ProviderClient:
    return CLIENTS[check_provider(provider)](api_key or "", base_url, **kwargs)
