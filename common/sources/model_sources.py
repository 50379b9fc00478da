"""The downloaded models of every provider, as three watched background sources.

One per provider family, so Ollama being down only fails `models_ollama` while Hugging Face
and file models still come. Each is re-read when files under its folders change (Ollama's
manifests, the Hugging Face cache per repo folder, the PyTorch/fastai/Keras folders), so a
download or delete shows within seconds; the exporter's collector and the admin's Models page
both read these snapshots instead of scanning per request.
"""
from __future__ import annotations

from typing import Mapping

from common.background import SourceGroup
from common.sources.file_models import scan_model_files
from common.sources.hf_models import HfCacheTracker
from common.sources.model_dirs import FILE_PROVIDER_DIRS, hf_hub_cache, ollama_models
from common.sources.model_record import ModelRecord
from common.sources.ollama_client import OllamaClient
from common.sources.ollama_models import OllamaScanner
from common.sources.watched import WatchedSource


class ModelSources(SourceGroup):
    def __init__(self, env: Mapping[str, str], *, sweep_seconds: float, polling_seconds: float,
                 observer_factory=None):
        kwargs = {"sweep_seconds": sweep_seconds, "polling_seconds": polling_seconds,
                  "observer_factory": observer_factory}
        models_dir = ollama_models(env)
        self.ollama = OllamaScanner(OllamaClient.from_env(env), models_dir)
        # Which models are loaded shows in no file: Ollama is asked every polling interval anyway.
        self.ollama_source = WatchedSource("models_ollama", lambda _changed: self.ollama.scan(),
                                           lambda: [models_dir / "manifests"],
                                           watching_interval_seconds=polling_seconds, **kwargs)
        self.hf = HfCacheTracker(lambda: hf_hub_cache(env))
        self.hf_source = WatchedSource("models_huggingface", self.hf.refresh, lambda: [hf_hub_cache(env)],
                                       **kwargs)
        self.files_source = WatchedSource("models_files", lambda _changed: scan_model_files(env),
                                          lambda: [d(env) for d in FILE_PROVIDER_DIRS.values()], **kwargs)

    @property
    def sources(self) -> list[WatchedSource]:
        return [self.ollama_source, self.hf_source, self.files_source]

    def records(self) -> list[ModelRecord]:
        return [r for source in self.sources for r in (source.snapshot().value or [])]
