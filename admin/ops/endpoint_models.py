"""Which downloaded models an endpoint may serve: the choices of its model field, checked on save.

The lists come from the admin's watched model snapshots (admin/sources.py, the sources the
exporter's models collector runs), so a form scans nothing; an ollama endpoint on another
Ollama server than the platform's asks that server's /api/tags (short timeout). A source that
fails (Ollama down) is named in `unavailable`; the others still give their models.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from sqlalchemy import select

from common.sources.endpoint_probe import normalize_ollama_tag, server_root
from common.sources.file_models import scan_model_files
from common.sources.hf_models import scan_hf_cache
from common.sources.model_dirs import FILE_PROVIDER_DIRS, hf_hub_cache
from common.sources.model_sources import ModelSources
from common.sources.ollama_client import OllamaClient, OllamaError, ollama_base_url
from common.store.services import Endpoint

# A form waits at most this long for Ollama's list (connect, read).
LIST_TIMEOUT = (1.0, 2.0)
NONE_CHOICE = ("", "(none)")
# The providers whose models each inference server serves; other servers take any model.
SERVER_PROVIDERS = {"ollama": ("ollama",), "vllm": ("huggingface",)}
SERVER_MODEL_KIND = {"ollama": "Ollama ", "vllm": "Hugging Face "}
SOURCE_PROVIDERS = {"Ollama": ("ollama",), "Hugging Face": ("huggingface",), "Model file": tuple(FILE_PROVIDER_DIRS)}


@dataclass
class DownloadedModels:
    models: list[tuple[str, str]] = field(default_factory=list)  # (provider, model id)
    unavailable: dict[str, str] = field(default_factory=dict)  # source -> why it listed nothing

    def for_server(self, server: str) -> list[tuple[str, str]]:
        providers = SERVER_PROVIDERS.get(server)
        return [m for m in self.models if providers is None or m[0] in providers]

    def unavailable_for(self, server: str) -> dict[str, str]:
        """The failed sources a `server` endpoint could take a model from."""
        providers = set(SERVER_PROVIDERS.get(server) or ())
        return {source: why for source, why in self.unavailable.items()
                if not providers or providers & set(SOURCE_PROVIDERS[source])}

    def choices(self) -> list[tuple[str, str]]:
        return [NONE_CHOICE, *((model, f"{model} ({provider})") for provider, model in self.models)]

    def warning(self, server: str = "") -> str:
        return "; ".join(f"{source} models are unavailable ({why})"
                         for source, why in self.unavailable_for(server).items())


def ollama_base_for(env: Mapping[str, str], server: str, base_url: str) -> str:
    """The Ollama an endpoint uses: its own base URL for an ollama endpoint, else the platform's."""
    if server == "ollama" and base_url:
        return server_root(base_url)
    return ollama_base_url(env)


def list_downloaded(env: Mapping[str, str], ollama_base: str = "",
                    models: ModelSources | None = None) -> DownloadedModels:
    """The models an endpoint may pick. With `models` (the admin's watched snapshots) nothing is
    scanned nor asked here, except another Ollama server than the platform's own."""
    found = DownloadedModels()
    base = ollama_base or ollama_base_url(env)
    snapshots = {}
    if models is not None:
        snapshots = {"Hugging Face": models.hf_source.snapshot(), "Model file": models.files_source.snapshot()}
        if server_root(base) == server_root(ollama_base_url(env)):
            snapshots["Ollama"] = models.ollama_source.snapshot()
    if "Ollama" in snapshots:
        _add_snapshot(found, "Ollama", snapshots["Ollama"])
    else:
        try:
            tags = OllamaClient(base, timeout=LIST_TIMEOUT).tags()
        except OllamaError as exc:
            found.unavailable["Ollama"] = str(exc)
        else:
            found.models += sorted(("ollama", m["name"]) for m in tags if m.get("name"))
    for source, scan in (("Hugging Face", lambda: scan_hf_cache(hf_hub_cache(env))),
                         ("Model file", lambda: scan_model_files(env))):
        if source in snapshots:
            _add_snapshot(found, source, snapshots[source])
            continue
        try:
            found.models += [(r.provider, r.model) for r in scan()]
        except Exception as exc:  # an unreadable cache: say so, keep the other sources
            found.unavailable[source] = f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
    return found


def _add_snapshot(found: DownloadedModels, source: str, snapshot) -> None:
    if not snapshot.ok:
        found.unavailable[source] = snapshot.error or "not listed yet"
        return
    found.models += sorted((r.provider, r.model) for r in snapshot.value or [])


def _same(provider: str, listed: str, wanted: str) -> bool:
    if provider == "ollama":
        return normalize_ollama_tag(listed) == normalize_ollama_tag(wanted)
    return listed == wanted


def refusal(found: DownloadedModels, server: str, model: str) -> str:
    """Why `model` cannot be the model of a `server` endpoint; "" when it can (or is none)."""
    if not model or any(_same(provider, listed, model) for provider, listed in found.for_server(server)):
        return ""
    if found.unavailable_for(server):
        return f"cannot check that {model} is downloaded: {found.warning(server)}"
    kind = SERVER_MODEL_KIND.get(server, "")
    return (f"{model} is not a downloaded {kind}model: choose one of the list "
            "(download it first on the Models page)")


# An endpoint in these states is serving (or loading) its model right now.
IN_USE_STATUSES = ("running", "starting")


def endpoints_using(session, provider: str, model: str) -> tuple[list[str], list[str]]:
    """Names of the endpoints configured with this downloaded model: (serving it now, stopped).

    An endpoint's model matches as its form checks it (Ollama tags normalized); a server kind
    that only serves other providers' models (vLLM serves Hugging Face ones) never matches.
    """
    running, stopped = [], []
    for endpoint in session.scalars(select(Endpoint).order_by(Endpoint.name)):
        providers = SERVER_PROVIDERS.get(endpoint.server)
        if not endpoint.model or (providers is not None and provider not in providers):
            continue
        if _same(provider, endpoint.model, model):
            (running if endpoint.status in IN_USE_STATUSES else stopped).append(endpoint.name)
    return running, stopped
