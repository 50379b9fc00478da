"""One interface over the cloud GPU providers' APIs.

Each client speaks its provider's documented HTTP API with common.http_client (the official
SDKs hard-code their endpoints or read keys from their own config files, so a
base-URL override is what lets tests point a client at a loopback fake).
Every failure (timeout, 401, 5xx, malformed JSON, API-level error) becomes a
ProviderError whose message is fit for the admin page and never contains the key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from common import http_client, redact
from common.sources.vm_costs import BilledCost, StorageRule  # noqa: F401  (part of the client interface)

DEFAULT_TIMEOUT_SECONDS = 15.0


class ProviderError(Exception):
    """A provider call failed; the message says why, for the user.

    A plain ProviderError may have taken effect at the provider (a timeout, a 5xx, an answer
    we could not read): a create that fails so is recorded as half-done, never forgotten.
    """


class ProviderRefused(ProviderError):
    """The provider said no (HTTP 4xx or an API-level refusal): the call surely did nothing."""


class ProviderAuthError(ProviderRefused):
    """The provider refused the API key (401/403)."""


@dataclass(frozen=True)
class CreateRequest:
    name: str
    gpu: str
    gpu_count: int = 1
    region: str = ""
    vcpus: int = 0
    ram_gb: float = 0.0
    container_gb: float = 20.0
    volume_gb: float = 0.0
    image: str = ""
    ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class InstanceState:
    instance_id: str
    status: str            # one of common.store.vms.VM_STATUSES
    provider_state: str    # the provider's own word, for display
    terminal_url: str = ""
    # private port -> public base URL ("https://abc-8888.proxy.runpod.net")
    public_urls: dict[int, str] = field(default_factory=dict)
    name: str = ""         # the name given at create: how a half-recorded create is found again


class ProviderClient:
    """A provider's API. Each subclass declares the provider once, in these class attributes;
    the admin's provider list, choices, key variables and cost rules derive from them."""

    provider: str = ""  # the name stored in the hosting platform row and shown as a label
    display_name: str = ""
    default_base_url: str = ""
    key_var: str = ""  # the variable the provider's own SDK/CLI reads the API key from
    gpu_example: str = ""  # a GPU type id as the provider spells it, for the form's hint
    storage_rule: StorageRule  # how its storage bills while the VM is stopped

    @classmethod
    def key_from_local_config(cls, home: Path) -> str | None:
        """The API key the provider's CLI saved under `home`, when it keeps one there."""
        return None

    def __init__(self, api_key: str, base_url: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS, ports: tuple[int, ...] = ()):
        if not api_key:
            raise ProviderError(f"no API key for {self.provider}: set the platform's key or its env var")
        self._api_key = api_key
        redact.remember(api_key)  # whatever echoes it (an error body, a log) is masked
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.timeout = timeout
        # Private ports whose public URLs status answers should carry (dashboard, exporter).
        self.ports = tuple(ports)

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} {self.base_url}>"

    # --- the interface -------------------------------------------------------------
    def create(self, request: CreateRequest) -> InstanceState:
        raise NotImplementedError

    def start(self, instance_id: str) -> str:
        """Start a stopped instance; returns its id afterwards (Jarvislabs may give a new one)."""
        raise NotImplementedError

    def stop(self, instance_id: str) -> None:
        raise NotImplementedError

    def terminate(self, instance_id: str) -> None:
        raise NotImplementedError

    def statuses(self) -> dict[str, InstanceState]:
        """Every instance of the account, by id: one call covers all VMs of the platform."""
        raise NotImplementedError

    def billing(self, instance_ids: list[str], start: float, end: float) -> dict[str, BilledCost] | None:
        """Cost per instance between two unix times, or None when the provider reports none."""
        return None

    # --- HTTP ------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}

    def _call(self, method: str, path: str, **kwargs):
        url = self.base_url + path
        what = f"{self.provider} {method} {path.split('?')[0]}"
        try:
            response = http_client.request(method, url, headers=self._headers(),
                                           timeout=self.timeout, carries_secret=True, **kwargs)
        except (http_client.InvalidHeader, http_client.InvalidURL,
                http_client.ForbiddenDestination) as exc:  # refused before sending
            raise ProviderRefused(f"{what}: {exc}") from None
        except http_client.Timeout:
            raise ProviderError(f"{what}: no answer within {self.timeout:g} s") from None
        except http_client.RequestException as exc:
            raise ProviderError(f"{what}: cannot connect ({type(exc).__name__})") from None
        if response.status_code in (401, 403):
            raise ProviderAuthError(f"{what}: API key refused (HTTP {response.status_code})")
        if 400 <= response.status_code < 500:
            raise ProviderRefused(f"{what}: HTTP {response.status_code} {_short(response.text)}")
        if response.status_code >= 400:
            raise ProviderError(f"{what}: HTTP {response.status_code} {_short(response.text)}")
        if not response.content:
            return None
        try:
            return response.json()
        except (ValueError, json.JSONDecodeError):
            raise ProviderError(f"{what}: malformed JSON in the answer") from None


def _short(text: str, limit: int = 160) -> str:
    return redact.excerpt(text, limit)  # masked before the cut


def expect(payload, kind: type, what: str):
    """Check an answer's shape, so a surprising payload is a clear error, not a KeyError."""
    if not isinstance(payload, kind):
        raise ProviderError(f"{what}: unexpected answer ({type(payload).__name__})")
    return payload
