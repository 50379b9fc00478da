"""Downloaded models of every provider (dashboard section 2.3).

Scanning runs in watched background sources, one per provider family
(common/sources/model_sources.py), so Ollama being down only fails `models_ollama`
(wordslab_source_refresh_success 0) while Hugging Face and file models still come; the
scrape only merges snapshots.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from prometheus_client.core import Metric
from sqlalchemy.orm import Session

from common.config import Settings
from common.sources import config_db
from common.sources.model_record import MODEL_STATUSES, ModelRecord
from common.sources.model_sources import ModelSources
from common.store.models import speeds, type_overrides
from exporter.collectors.base import WordslabCollector, add_state_set, gauge

LABELS = ("provider", "model")


@dataclass(frozen=True)
class ModelSettings:
    """The admin's per-model settings: type overrides and measured speeds."""
    types: dict[tuple[str, str], str] = field(default_factory=dict)
    # (provider, model, unit) -> (value, source), source one of common.store.models.SPEED_SOURCES
    speeds: dict[tuple[str, str, str], tuple[float, str]] = field(default_factory=dict)


def read_model_settings(session: Session) -> ModelSettings:
    return ModelSettings(types=type_overrides(session),
                         speeds={(s.provider, s.model, s.unit): (s.value, s.source or "benchmark")
                                 for s in speeds(session)})


class ModelsCollector(WordslabCollector):
    name = "models"
    output_from_sources_only = True

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.models = ModelSources(settings.env, sweep_seconds=settings.sweep_interval_seconds,
                                   polling_seconds=settings.slow_refresh_interval_seconds)
        self.ollama, self.ollama_source = self.models.ollama, self.models.ollama_source
        self.hf_source, self.files_source = self.models.hf_source, self.models.files_source
        self.config = config_db.shared(settings.db_path)
        self.config.add_read("model_settings", read_model_settings, ModelSettings())
        self.sources = [self.ollama_source, self.hf_source, self.files_source, self.config.source]

    def records(self) -> list[ModelRecord]:
        return self.models.records()

    def collect_metrics(self) -> Iterable[Metric]:
        db: ModelSettings = self.config.value("model_settings")
        info = gauge("model_info", "Downloaded model (value 1). model_type is LLM, VLM, Embed, ImgGen, STT, "
                     "TTS (from metadata or set in the admin) or Other; quantization is the quantization "
                     "level or the dominant weight dtype.",
                     ("provider", "model", "model_type", "path", "quantization"))
        size = gauge("model_size_bytes", "Disk space of the model. Blobs shared between Ollama models (a "
                     "model and its -Nk context variants) count once, for the first model downloaded.", LABELS)
        params = gauge("model_parameters", "Parameter count from the model's metadata (Ollama show, "
                       "safetensors headers). Absent when the format does not say.", LABELS)
        context = gauge("model_context_length", "Context length in tokens the model runs with (Ollama "
                        "num_ctx if set, else the trained context from the metadata / config.json).", LABELS)
        vram = gauge("model_vram_estimate_bytes", "Estimated GPU memory to run the model: weights as "
                     "stored plus an fp16 KV cache at the context length "
                     "(2 * layers * context * kv_heads * head_dim * 2 bytes).", LABELS)
        downloaded = gauge("model_download_timestamp_seconds", "When the model was downloaded "
                           "(Ollama modified_at, newest blob mtime in the Hugging Face cache, file mtime).", LABELS)
        used = gauge("model_last_used_timestamp_seconds", "When the model was last used. source: "
                     "ollama_ps (Ollama's /api/ps: expires_at minus the default 5 min keep-alive, or the "
                     "scan that first saw it loaded) or file_atime (the weights' access time, relatime: "
                     "about daily precision). vLLM models: the instance_model_name:wordslab_vllm_last_request_timestamp_seconds:max "
                     "recording rule.", (*LABELS, "source"))
        status = gauge("model_status", "Whether the model's files are whole and readable, in label status "
                       "(one series per status, 1 for the current one): ok; incomplete (a download "
                       "interrupted or a file missing: size is what is on disk, no parameters nor VRAM "
                       "estimate); error (its metadata could not be read: see the admin's Models page).",
                       ("provider", "model", "status"))
        speed = gauge("model_processing_speed", "Last measured processing speed, in `unit` (tokens_per_second: "
                      "Ollama's eval_count / eval_duration). source: benchmark (the admin's benchmark "
                      "action). vLLM models: the "
                      "instance_model_name:wordslab_vllm_tokens_per_second:rate1m recording rule.",
                      ("provider", "model", "unit", "source"))
        for r in self.records():
            key = [r.provider, r.model]
            model_type = db.types.get((r.provider, r.model), r.model_type)
            info.add_metric([*key, model_type, r.path, r.quantization], 1.0)
            size.add_metric(key, r.size_bytes)
            add_state_set(status, key, MODEL_STATUSES, r.status)
            for family, value in ((params, r.parameters), (context, r.context_length),
                                  (vram, r.vram_estimate_bytes), (downloaded, r.download_timestamp)):
                if value is not None:
                    family.add_metric(key, value)
            if r.last_used_timestamp is not None:
                used.add_metric([*key, r.last_used_source], r.last_used_timestamp)
        present = {(r.provider, r.model) for r in self.records()}
        for (provider, model, unit), (value, source) in sorted(db.speeds.items()):
            if (provider, model) in present:
                speed.add_metric([provider, model, unit, source], value)
        yield from (info, size, params, context, vram, downloaded, used, status, speed)
