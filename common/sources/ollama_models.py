"""Ollama models through its API, with sizes deduplicated by blob digest.

An Ollama model and its `-Nk` context variants (a Modelfile with `PARAMETER num_ctx`)
share the weights blob. /api/tags reports each model's full size, so summing it counts
the weights once per variant. We attribute every blob to the first model that has it
(oldest download, then name) and give the others only their own layers, so the sum of
`wordslab_model_size_bytes` is the real disk use. Layer digests come from the manifests
under OLLAMA_MODELS; for a remote Ollama without them, the weights digest in /api/show's
modelfile (`FROM .../blobs/sha256-...`) groups the variants instead.
"""
from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime
from pathlib import Path

from common.log_changes import ChangeLog
from common.readable import readable
from common.sources.model_record import (OLLAMA_DEFAULT_KEEP_ALIVE_SECONDS, ModelRecord,
                                        parse_parameter_size, type_from_capabilities,
                                        vram_estimate)
from common.sources.gguf_meta import kv_shape_from_metadata, metadata_int
from common.sources.ollama_client import OllamaClient, OllamaError

log = logging.getLogger(__name__)
# Repeated at every refresh: a problem is logged when it starts or changes, not each time.
_problems = ChangeLog(log, logging.INFO)

DEFAULT_REGISTRY = "registry.ollama.ai"
WEIGHT_MEDIA_TYPES = ("application/vnd.ollama.image.model", "application/vnd.ollama.image.projector")
_FROM_BLOB = re.compile(r"^FROM\s+\S*sha256[-:]([0-9a-f]{64})", re.MULTILINE)
_NUM_CTX = re.compile(r"^num_ctx\s+(\d+)", re.MULTILINE)


def manifest_path(models_dir: Path, name: str) -> Path:
    """manifests/<registry>/<namespace>/<model>/<tag>, as Ollama lays them out.

    The tag follows the last ':' after the last '/': a registry may carry a port
    (`registry:5000/ns/model:tag` is manifests/registry:5000/ns/model/tag).
    """
    slash = name.rfind("/")
    colon = name.rfind(":")
    name, tag = (name[:colon], name[colon + 1:]) if colon > slash else (name, "")
    parts = name.split("/")
    if len(parts) == 1:
        parts = [DEFAULT_REGISTRY, "library", parts[0]]
    elif len(parts) == 2:
        parts = [DEFAULT_REGISTRY, *parts]
    return models_dir.joinpath("manifests", *parts, tag or "latest")


def blob_path(models_dir: Path, digest: str) -> Path:
    return models_dir / "blobs" / digest.replace(":", "-")


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 time from Ollama (Go's RFC3339Nano: 0 to 9 fraction
    digits, trailing zeros dropped, `Z` or an offset); None when absent or unparsable.
    Python 3.10's fromisoformat takes exactly 3 or 6 fraction digits, so the fraction is made 6."""
    if not isinstance(text, str) or not text:
        return None
    text = re.sub(r"\.(\d+)", lambda m: "." + m.group(1)[:6].ljust(6, "0"), text.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class OllamaScanner:
    """Keeps /api/show answers per model digest and when each model was last seen loaded."""

    def __init__(self, client: OllamaClient, models_dir: Path | None,
                 keep_alive_seconds: float = OLLAMA_DEFAULT_KEEP_ALIVE_SECONDS):
        self.client = client
        self.models_dir = models_dir
        self.keep_alive_seconds = keep_alive_seconds
        self._show_cache: dict[tuple[str, str], dict] = {}
        self._last_loaded: dict[str, float] = {}

    def scan(self) -> list[ModelRecord]:
        tags = self.client.tags()  # Ollama down: raises, the source shows the failure
        now = time.time()
        try:
            loaded = self.client.ps()
        except OllamaError:  # only the last-use times wait for the next round; the models stay listed
            loaded = []
        for running in loaded:
            try:
                name = running.get("name") or running.get("model", "")
                self._last_loaded[name] = last_request_time(running, now, self._last_loaded.get(name),
                                                            self.keep_alive_seconds)
            except Exception:  # an odd /api/ps entry only loses that model its last-use time
                continue
        tags = [m for m in tags if isinstance(m, dict) and isinstance(m.get("name"), str) and m["name"]]
        models = sorted(tags, key=lambda m: (parse_time(m.get("modified_at")) or 0, m["name"]))
        seen_blobs: set[str] = set()
        groups: dict[str, int] = {}  # weights digest -> smallest size in the group (fallback)
        shows, failed = {}, {}
        for m in models:  # each model on its own: one odd answer never hides the others
            try:
                shows[m["name"]] = self._show(m)
                digest = _from_digest(shows[m["name"]])
                if digest:
                    groups[digest] = min(groups.get(digest, int(m.get("size", 0))), int(m.get("size", 0)))
            except Exception as exc:
                failed[m["name"]] = exc
        current = {_show_key(m) for m in models}
        self._show_cache = {k: v for k, v in self._show_cache.items() if k in current}
        owners: set[str] = set()
        records = []
        for m in models:
            try:
                if m["name"] in failed:
                    raise failed[m["name"]]
                records.append(self._model(m, shows[m["name"]], seen_blobs, groups, owners))
            except Exception as exc:  # one odd answer is shown as such, never hides the other models
                _problems.report(m["name"], f"{type(exc).__name__}: {exc}", "ollama model %s: %s", m["name"], exc)
                records.append(ModelRecord(provider="ollama", model=readable(m["name"]), status="error",
                                           problem=readable(f"{type(exc).__name__}: {exc}")))
        return records

    def _model(self, m: dict, show: dict, seen_blobs: set[str], groups: dict[str, int],
               owners: set[str]) -> ModelRecord:
        layers = self._layers(m["name"])
        missing: list[str] = []
        if layers is not None:
            missing = [d for d, _, _ in layers if not blob_path(self.models_dir, d).exists()]
            size = sum(s for d, s, _ in layers if d not in seen_blobs and d not in missing)
            seen_blobs.update(d for d, _, _ in layers)
            weights = sum(s for _, s, media in layers if media in WEIGHT_MEDIA_TYPES)
            blob_atime = self._weights_atime(layers)
        else:
            size, weights = self._fallback_size(m, show, groups, owners)
            blob_atime = None
        record = self._record(m, show, size, weights or m.get("size", 0))
        if missing:  # blobs deleted by hand: Ollama still lists it, but it cannot run
            record.mark("incomplete", f"{len(missing)} blob(s) of its manifest missing: "
                        + ", ".join(d[:19] for d in missing[:3]))
            record.vram_estimate_bytes = None
        if record.last_used_timestamp is None:
            record.last_used_timestamp, record.last_used_source = blob_atime, "file_atime"
        return record

    def _show(self, model: dict) -> dict:
        key = _show_key(model)
        if key not in self._show_cache:
            try:
                self._show_cache[key] = self.client.show(model["name"])
            except OllamaError:
                return {}  # listed but not showable (being deleted): keep its basic figures
        return self._show_cache[key]

    def _layers(self, name: str) -> list[tuple[str, int, str]] | None:
        if self.models_dir is None:
            return None
        try:
            manifest = json.loads(manifest_path(self.models_dir, name).read_text())
        except (OSError, ValueError):
            return None
        entries = list(manifest.get("layers") or [])
        if manifest.get("config"):
            entries.append(manifest["config"])
        return [(e["digest"], int(e.get("size", 0)), e.get("mediaType", "")) for e in entries]

    def _weights_atime(self, layers) -> float | None:
        # Ollama mmaps the weights blob when it loads a model, which updates its atime.
        times = []
        for digest, _, media in layers:
            if media in WEIGHT_MEDIA_TYPES:
                try:
                    times.append(blob_path(self.models_dir, digest).stat().st_atime)
                except OSError:
                    pass
        return max(times) if times else None

    @staticmethod
    def _fallback_size(model: dict, show: dict, groups: dict[str, int], owners: set[str]):
        size = int(model.get("size", 0))
        digest = _from_digest(show)
        if not digest:
            return size, size
        if digest in owners:
            return max(0, size - groups[digest]), groups[digest]
        owners.add(digest)
        return size, groups[digest]

    def _record(self, model: dict, show: dict, size: int, weights: int) -> ModelRecord:
        name = model["name"]
        details = show.get("details") or model.get("details") or {}
        info = show.get("model_info") or {}
        arch = info.get("general.architecture", "")
        context = _num_ctx(show) or metadata_int(info.get(f"{arch}.context_length"))
        last_used = self._last_loaded.get(name)
        path = ""
        if self.models_dir is not None:
            manifest = manifest_path(self.models_dir, name)
            path = str(manifest) if manifest.exists() else ""
        # A cloud model (Ollama 0.12+ `name-cloud`, remote_host set) runs elsewhere: only its
        # manifest is here and it needs no VRAM on this machine.
        remote = bool(model.get("remote_host") or model.get("remote_model"))
        return ModelRecord(
            last_used_source="ollama_ps",
            provider="ollama", model=readable(name),  # shown and linked: text a page can encode
            model_type=type_from_capabilities(show.get("capabilities") or ["completion"]),
            path=path,
            quantization=details.get("quantization_level", ""),
            size_bytes=size,
            parameters=metadata_int(info.get("general.parameter_count"))
            or parse_parameter_size(details.get("parameter_size")),
            context_length=context,
            vram_estimate_bytes=None if remote else vram_estimate(weights, kv_shape_from_metadata(info, arch),
                                                                  context),
            download_timestamp=parse_time(model.get("modified_at")),
            last_used_timestamp=last_used,
        )


def _show_key(model: dict) -> tuple[str, str]:
    """A model's /api/show answer is kept while its name and digest stay (a digest of an odd
    type is compared as text rather than failing the whole listing)."""
    return model["name"], str(model.get("digest", ""))


def last_request_time(running: dict, now: float, previous: float | None, keep_alive: float) -> float:
    """When a loaded model last served a request, from /api/ps.

    Ollama sets expires_at to the last request plus the keep-alive, so under the server's
    keep-alive it is expires_at - keep_alive. A model kept longer (keep_alive -1, or a
    per-request value) says nothing exact: it counts as used when a scan first saw it loaded.
    """
    expires = parse_time(running.get("expires_at"))
    if expires is not None and now <= expires <= now + keep_alive:
        estimate = expires - keep_alive
    else:
        estimate = previous if previous is not None else now
    return max(estimate, previous or 0.0)


def _from_digest(show: dict) -> str | None:
    match = _FROM_BLOB.search(show.get("modelfile") or "")
    return match.group(1) if match else None


def _num_ctx(show: dict) -> int | None:
    """A `-Nk` variant sets num_ctx: that is the context it runs with."""
    match = _NUM_CTX.search(show.get("parameters") or "")
    return int(match.group(1)) if match else None
