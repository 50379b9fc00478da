"""Models in the Hugging Face hub cache (models--org--name/{blobs,refs,snapshots/<rev>}).

huggingface_hub's own `scan_cache_dir` walks the layout (and copes with corrupt repos);
we add what it does not know: parameters and dtype from safetensors headers, context
length and KV shape from config.json, and a model type from the repo's metadata.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from huggingface_hub import scan_cache_dir
from huggingface_hub.errors import CacheNotFound

from common.sources.model_record import (PIPELINE_TYPES, UNKNOWN_TYPE, KvShape, ModelRecord,
                           type_from_architectures, vram_estimate)
from common.sources.safetensors_meta import TensorSummary, combine, read_noatime, summarize

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".onnx", ".msgpack")
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length",
                "max_sequence_length", "n_ctx", "model_max_length")


def scan_hf_cache(cache_dir: Path) -> list[ModelRecord]:
    """One record per cached model repo; a missing cache is simply no models."""
    if not cache_dir.is_dir():
        return []
    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return []
    for warning in info.warnings:
        log.info("hf cache: %s", warning)
    return [_record(repo) for repo in sorted(info.repos, key=lambda r: r.repo_id)
            if repo.repo_type == "model"]


def current_revision(repo):
    """The revision `main` points to, else the newest one."""
    for revision in repo.revisions:
        if "main" in revision.refs:
            return revision
    return max(repo.revisions, key=lambda r: r.last_modified)


def _record(repo) -> ModelRecord:
    record = ModelRecord(provider="huggingface", model=repo.repo_id, path=str(repo.repo_path),
                         size_bytes=int(repo.size_on_disk),
                         download_timestamp=float(repo.last_modified))
    if not repo.revisions:
        return record
    revision = current_revision(repo)
    files = {f.file_path.relative_to(revision.snapshot_path).as_posix(): f for f in revision.files}
    config = _json(files.get("config.json"))
    text_config = config.get("text_config") or config.get("llm_config") or {}
    summary = _tensors(files)
    weights = [f for name, f in files.items() if name.endswith(WEIGHT_SUFFIXES)]

    record.model_type = _model_type(files, config)
    record.parameters = summary.parameters if summary else None
    record.quantization = _quantization(config, summary)
    record.context_length = _context_length(config, text_config)
    weights_bytes = summary.tensor_bytes if summary else sum(f.size_on_disk for f in weights)
    record.vram_estimate_bytes = vram_estimate(weights_bytes or record.size_bytes,
                                               _kv_shape(text_config or config), record.context_length)
    # Weights are only read when the model is used (we read headers with O_NOATIME).
    accessed = [f.blob_last_accessed for f in weights] or [repo.last_accessed]
    record.last_used_timestamp = float(max(accessed))
    return record


def _json(cached_file) -> dict:
    if cached_file is None:
        return {}
    try:
        data = json.loads(read_noatime(cached_file.blob_path))
    except (OSError, ValueError) as exc:
        log.info("unreadable %s: %s", cached_file.file_path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _tensors(files: dict) -> TensorSummary | None:
    summaries = []
    for name, cached in files.items():
        if name.endswith(".safetensors"):
            try:
                summaries.append(summarize(cached.blob_path))
            except (OSError, ValueError) as exc:
                log.info("unreadable safetensors %s: %s", cached.file_path, exc)
    return combine(summaries)


def _model_type(files: dict, config: dict) -> str:
    tag = _pipeline_tag(files.get("README.md"))
    if tag in PIPELINE_TYPES:
        return PIPELINE_TYPES[tag]
    if "model_index.json" in files:  # a diffusers pipeline
        return "ImgGen"
    if "modules.json" in files or "config_sentence_transformers.json" in files:
        return "Embed"
    return type_from_architectures(config.get("architectures") or [], config) or UNKNOWN_TYPE


def _pipeline_tag(readme) -> str | None:
    """`pipeline_tag:` from the model card's YAML front matter."""
    if readme is None:
        return None
    try:
        head = read_noatime(readme.blob_path, 16384).decode("utf-8", "replace")
    except OSError:
        return None
    if not head.startswith("---"):
        return None
    for line in head.splitlines()[1:]:
        if line.startswith("---"):
            break
        if line.startswith("pipeline_tag:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    return None


def _quantization(config: dict, summary: TensorSummary | None) -> str:
    quant = config.get("quantization_config")
    if isinstance(quant, dict) and quant.get("quant_method"):
        bits = quant.get("bits") or ("4" if quant.get("load_in_4bit") else "8" if quant.get("load_in_8bit") else "")
        return f"{quant['quant_method']}{f'-{bits}bit' if bits else ''}"
    if summary and summary.dtype:
        return summary.dtype
    dtype = config.get("torch_dtype") or config.get("dtype")
    return str(dtype) if dtype else ""


def _context_length(config: dict, text_config: dict) -> int | None:
    for source in (text_config, config):
        for key in CONTEXT_KEYS:
            value = source.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def _kv_shape(config: dict) -> KvShape | None:
    layers = config.get("num_hidden_layers") or config.get("n_layer") or config.get("num_layers")
    heads = config.get("num_attention_heads") or config.get("n_head")
    hidden = config.get("hidden_size") or config.get("n_embd") or config.get("d_model")
    if not (isinstance(layers, int) and isinstance(heads, int) and heads > 0):
        return None
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or (hidden // heads if isinstance(hidden, int) else None)
    if not head_dim:
        return None
    return KvShape(layers=layers, kv_heads=int(kv_heads), head_dim=int(head_dim))
