"""Models in the Hugging Face hub cache (models--org--name/{blobs,refs,snapshots/<rev>}).

We walk the layout ourselves rather than with huggingface_hub's `scan_cache_dir`: that drops a
whole repo when one snapshot link points to a missing blob, and does not tie `*.incomplete`
blobs to their repo. Each repo is read on its own: one that cannot be read is listed with
status "error", a download that is not whole with status "incomplete" (size = what is on
disk, no VRAM estimate), and neither hides the other repos. We add parameters and dtype from
safetensors headers, context length and KV shape from config.json, a model type from the
repo's metadata.
"""
from __future__ import annotations

import json
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from common.log_changes import ChangeLog
from common.readable import readable
from common.sources.model_record import (PIPELINE_TYPES, UNKNOWN_TYPE, KvShape, ModelRecord,
                                         type_from_architectures, vram_estimate)
from common.sources.gguf_meta import Truncated, summarize_gguf_set
from common.sources.safetensors_meta import TensorSummary, combine, read_noatime, summarize
from common.sources.torch_meta import summarize_checkpoint

log = logging.getLogger(__name__)
# Rescanned every 30 s: a broken file is logged once, not at every scan.
_problems = ChangeLog(log, logging.INFO)

REPO_PREFIX = "models--"
INCOMPLETE_SUFFIX = ".incomplete"
# Weight formats in the order a repo's "one weight set" is chosen when it has no safetensors.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".onnx", ".msgpack")
_CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_NOT_WEIGHTS = ("training_args", "optimizer", "scheduler", "rng_state", "trainer_state")
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length",
                "max_sequence_length", "n_ctx", "model_max_length")
# Variant copies of the same weights (diffusers `*.fp16.safetensors`), counted only without the plain file.
_VARIANT = re.compile(r"^(?P<base>.+)\.(?:fp16|fp32|bf16|fp8|int8|non_ema|ema)\.safetensors$")


@dataclass
class CachedFile:
    """One file of the snapshot: its name there and the blob its link resolves to."""

    name: str
    blob_path: Path
    size: int
    atime: float


@dataclass
class RepoFiles:
    files: dict[str, CachedFile] = field(default_factory=dict)  # name in snapshot -> blob
    missing: list[str] = field(default_factory=list)  # links whose blob is gone
    unreadable: list[str] = field(default_factory=list)  # "name: why"


def scan_hf_cache(cache_dir: Path) -> list[ModelRecord]:
    """One record per cached model repo; a missing cache is simply no models.

    Never raises for one repo: its record then has status "error" and says why.
    """
    try:
        entries = sorted(os.scandir(cache_dir), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    records = [scan_hf_repo(Path(entry.path)) for entry in entries]
    return [r for r in records if r is not None]


def scan_hf_repo(repo_path: Path) -> ModelRecord | None:
    """One repo folder of the cache, as `scan_hf_cache` reads each; None for what is not a model
    repo (datasets--, spaces--, .locks) or a folder gone. Never raises: see scan_hf_cache."""
    if not repo_path.name.startswith(REPO_PREFIX) or not os.path.lexists(repo_path):
        return None
    repo_id = readable(repo_path.name[len(REPO_PREFIX):].replace("--", "/"))
    try:
        return _record(repo_path, repo_id)
    except Exception as exc:  # one unreadable repo is shown as such, never hides the others
        _problems.report(repo_path.name, str(exc), "hf cache: unreadable %s: %s", repo_path.name, exc)
        return ModelRecord(provider="huggingface", model=repo_id, path=readable(str(repo_path)),
                           status="error", problem=readable(f"{type(exc).__name__}: {exc}"))


def current_snapshot(repo: Path) -> Path | None:
    """The snapshot `refs/main` points to, else the newest one; None before any file completed."""
    snapshots = repo / "snapshots"
    try:
        main = read_noatime(repo / "refs" / "main").decode(errors="replace").strip()
    except OSError:
        main = ""
    if main and (snapshots / main).is_dir():
        return snapshots / main
    try:
        revisions = [Path(e.path) for e in os.scandir(snapshots) if e.is_dir()]
    except FileNotFoundError:
        return None
    return max(revisions, key=lambda p: p.stat().st_mtime, default=None)


class HfCacheTracker:
    """The cache's model records, re-read per repo folder that changed (WatchedSource refresh)."""

    def __init__(self, cache_dir: Callable[[], Path]):
        self.cache_dir = cache_dir
        self._records: dict[str, ModelRecord] = {}  # repo folder name -> record

    def refresh(self, changed: set[str] | None) -> list[ModelRecord]:
        cache = self.cache_dir()
        if changed is None:
            self._records = {}
            try:
                folders = {entry.name for entry in os.scandir(cache)}
            except (FileNotFoundError, NotADirectoryError):
                folders = set()
        else:
            folders = set()
            for path in changed:
                try:
                    folders.add(Path(path).relative_to(cache).parts[0])
                except (ValueError, IndexError):
                    continue  # the cache folder itself, or above it
        for folder in folders:
            record = scan_hf_repo(cache / folder)
            if record is None:
                self._records.pop(folder, None)
            else:
                self._records[folder] = record
        return [self._records[folder] for folder in sorted(self._records)]


def snapshot_files(snapshot: Path | None) -> RepoFiles:
    found = RepoFiles()
    if snapshot is None:
        return found
    for dirpath, _dirs, names in os.walk(snapshot):
        for name in names:
            link = Path(dirpath, name)
            rel = readable(link.relative_to(snapshot).as_posix())
            try:
                st = link.stat()
            except FileNotFoundError:
                found.missing.append(rel)
            except OSError as exc:
                found.unreadable.append(f"{rel}: {exc.strerror or exc}")
            else:
                found.files[rel] = CachedFile(rel, link, st.st_size, st.st_atime)
    return found


def _blob_stats(repo: Path) -> tuple[list[os.stat_result], list[os.stat_result]]:
    """Stats of the complete blobs and of the `*.incomplete` ones (interrupted downloads)."""
    complete, partial = [], []
    try:
        entries = list(os.scandir(repo / "blobs"))
    except FileNotFoundError:
        return complete, partial
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # vanished since the listing
        (partial if entry.name.endswith(INCOMPLETE_SUFFIX) else complete).append(st)
    return complete, partial


def _copied_bytes(repo: Path) -> int:
    """Files stored in the snapshots themselves, not as links to blobs: huggingface_hub does that
    where it cannot make symlinks (Windows without developer mode, HF_HUB_DISABLE_SYMLINKS)."""
    total, seen = 0, set()
    for dirpath, _dirs, names in os.walk(repo / "snapshots"):
        for name in names:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _record(repo: Path, repo_id: str) -> ModelRecord:
    complete, partial = _blob_stats(repo)
    record = ModelRecord(provider="huggingface", model=repo_id, path=readable(str(repo)),
                         size_bytes=sum(st.st_size for st in complete + partial) + _copied_bytes(repo),
                         download_timestamp=max((st.st_mtime for st in complete), default=None))
    snapshot = current_snapshot(repo)
    found = snapshot_files(snapshot)
    files = found.files
    if snapshot is None:
        record.mark("incomplete", "no file of the download completed yet")
    if found.missing:
        record.mark("incomplete", f"{len(found.missing)} file(s) link to a missing blob: "
                    + ", ".join(sorted(found.missing)[:5]))
    if partial:
        record.mark("incomplete", f"download interrupted: {len(partial)} partial blob(s) (*{INCOMPLETE_SUFFIX})")
    absent = missing_shards(list(files))
    if absent:  # a download stopped between files leaves no partial blob, only fewer shards
        record.mark("incomplete", f"{len(absent)} shard(s) of the weights not downloaded: "
                    + ", ".join(absent[:3]))
    if found.unreadable:
        record.mark("error", "unreadable: " + ", ".join(found.unreadable[:5]))
    config = _json(files.get("config.json"), record)
    text_config = _dict(config.get("text_config") or config.get("llm_config"))
    weights = weight_files(files)
    summary = _tensors(files, record) or _checkpoint_tensors(weights, record)
    gguf = _gguf(files, record) if summary is None else None

    record.model_type = _model_type(files, config)
    record.quantization = gguf.quantization if gguf else _quantization(config, summary)
    record.context_length = _context_length(config, text_config) or (gguf.context_length if gguf else None)
    if record.status == "ok":
        quant = _dict(config.get("quantization_config"))
        record.parameters = (summary.parameters_at(_int(quant.get("bits"))) if summary
                             else gguf.parameters if gguf else None)
        weights_bytes = (summary.tensor_bytes if summary else gguf.weights_bytes if gguf
                         else sum(f.size for f in weights))
        kv = _kv_shape(text_config or config) or (gguf.kv_shape if gguf else None)
        record.vram_estimate_bytes = vram_estimate(weights_bytes or record.size_bytes, kv, record.context_length)
    # Weights are only read when the model is used (we read headers with O_NOATIME).
    accessed = [f.atime for f in weights] or [st.st_atime for st in complete]
    record.last_used_timestamp = float(max(accessed)) if accessed else None
    return record


def weight_files(files: dict[str, CachedFile]) -> list[CachedFile]:
    """One weight set: the safetensors chosen by `safetensors_set`, else the first format present
    (training state saved beside the weights, `training_args.bin`, `optimizer.pt`..., left out)."""
    chosen = safetensors_set(list(files))
    if chosen:
        return [files[name] for name in chosen]
    for suffix in WEIGHT_SUFFIXES[1:]:
        found = [f for name, f in files.items()
                 if name.endswith(suffix) and not name.rpartition("/")[2].startswith(_NOT_WEIGHTS)]
        if found:
            return found
    return []


def _checkpoint_tensors(weights: list[CachedFile], record: ModelRecord) -> TensorSummary | None:
    """Parameters of PyTorch weights (`pytorch_model*.bin`) when the repo has no safetensors.

    A pickle our reader does not follow is not a broken model: it then gives no figure (the
    VRAM estimate falls back to the files' size) rather than a part of one.
    """
    summaries = []
    for cached in weights:
        if cached.name.endswith(_CHECKPOINT_SUFFIXES):
            try:
                summaries.append(summarize_checkpoint(cached.blob_path))
            except (OSError, ValueError) as exc:
                log.info("no parameters from %s of %s: %s", cached.name, record.model, exc)
                return None
    return combine(summaries)


def safetensors_set(names: list[str]) -> list[str]:
    """The safetensors files that make one copy of the weights, per folder of the snapshot.

    A folder's `*.safetensors.index.json` names its shards; without one, every safetensors file
    counts. Copies of the same weights are left out: `consolidated*.safetensors` (Mistral's own
    format) beside other weights, and `name.fp16.safetensors` variants beside `name.safetensors`.
    Folders (diffusers' unet/, text_encoder/, ...) are parts of one model and add up.
    """
    by_folder: dict[str, list[str]] = {}
    for name in names:
        if name.endswith(".safetensors"):
            by_folder.setdefault(name.rpartition("/")[0], []).append(name)
    chosen: list[str] = []
    for folder, tensors in sorted(by_folder.items()):
        plain = [n for n in tensors if not _VARIANT.match(n.rpartition("/")[2])]
        tensors = plain or tensors
        others = [n for n in tensors if not n.rpartition("/")[2].startswith("consolidated")]
        chosen += sorted(others or tensors)
    return chosen


_SHARD = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<total>\d{5})(?P<suffix>\.[^/]+)$")


def missing_shards(names: list[str]) -> list[str]:
    """The shards a set names but the snapshot lacks: `model-00002-of-00004.safetensors` (and
    `.bin`, `.gguf` splits) says four files make the set; sorted file names."""
    sets: dict[tuple[str, str, str], set[int]] = {}
    for name in names:
        match = _SHARD.match(name)
        if match:
            sets.setdefault((match["stem"], match["total"], match["suffix"]), set()).add(int(match["index"]))
    missing = []
    for (stem, total, suffix), present in sets.items():
        missing += [f"{stem}-{i:05d}-of-{total}{suffix}" for i in range(1, int(total) + 1) if i not in present]
    return sorted(missing)


@dataclass(frozen=True)
class GgufChoice:
    """A repo of GGUF files: one file (or split set) per quantization, the smallest counted."""

    parameters: int
    quantization: str  # every quantization in the repo, "Q4_K_M, Q8_0"
    context_length: int | None
    kv_shape: KvShape | None
    weights_bytes: int  # the smallest variant, with a vision projector (mmproj) if there is one


_SPLIT = re.compile(r"-\d{5}-of-\d{5}(?=\.gguf$)")


def gguf_variants(names: list[str]) -> dict[str, list[str]]:
    """GGUF files grouped by variant (a split model's `-00001-of-00003` parts together), the
    vision projectors (`mmproj*.gguf`) left out."""
    variants: dict[str, list[str]] = {}
    for name in sorted(names):
        if name.endswith(".gguf") and not name.rpartition("/")[2].startswith("mmproj"):
            variants.setdefault(_SPLIT.sub("", name), []).append(name)
    return variants


def _gguf(files: dict[str, CachedFile], record: ModelRecord) -> GgufChoice | None:
    variants = gguf_variants(list(files))
    if not variants:
        return None
    summaries = {}
    for key, names in variants.items():
        try:
            summaries[key] = summarize_gguf_set([files[n].blob_path for n in names])
        except (OSError, ValueError) as exc:
            record.mark("incomplete" if isinstance(exc, Truncated) else "error",
                        f"unreadable {names[0]}: {readable(str(exc))}")
    if not summaries:
        return None
    smallest = min(summaries, key=lambda key: sum(files[n].size for n in variants[key]))
    chosen = summaries[smallest]
    projector = min((f.size for name, f in files.items()
                     if name.rpartition("/")[2].startswith("mmproj") and name.endswith(".gguf")), default=0)
    return GgufChoice(chosen.parameters, ", ".join(sorted({s.quantization for s in summaries.values()})),
                      chosen.context_length, chosen.kv_shape,
                      sum(files[n].size for n in variants[smallest]) + projector)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _json(cached: CachedFile | None, record: ModelRecord) -> dict:
    if cached is None:
        return {}
    try:
        data = json.loads(read_noatime(cached.blob_path))
    except (OSError, ValueError, RecursionError) as exc:
        record.mark("error", f"unreadable {cached.name}: {exc}")
        return {}
    if not isinstance(data, dict):
        record.mark("error", f"{cached.name} is a JSON {type(data).__name__}, not an object")
        return {}
    return data


def _tensors(files: dict[str, CachedFile], record: ModelRecord) -> TensorSummary | None:
    summaries = []
    for name in safetensors_set(list(files)):
        try:
            summaries.append(summarize(files[name].blob_path))
        except (OSError, ValueError, RecursionError) as exc:
            record.mark("incomplete" if isinstance(exc, Truncated) else "error",
                        f"unreadable {name}: {readable(str(exc))}")
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
    if isinstance(quant, dict) and isinstance(quant.get("quant_method"), str):
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
