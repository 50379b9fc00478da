"""Weights kept as plain files: PyTorch hub checkpoints, fastai and Keras model folders.

One file is one model (its path relative to the provider's folder is its name). Parameters
and dtype come from the format's own metadata without loading the model: safetensors
headers, PyTorch checkpoints' tensor shapes (common/sources/torch_meta.py, no code of the
pickle runs) and Keras files' variables (common/sources/keras_meta.py). The VRAM estimate is
the weights' bytes when known, else the file size.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Mapping

from common.log_changes import ChangeLog
from common.readable import readable
from common.sources.model_dirs import FILE_PROVIDER_DIRS
from common.sources.gguf_meta import Truncated, read_gguf
from common.sources.model_record import UNKNOWN_TYPE, ModelRecord, vram_estimate
from common.sources.keras_meta import summarize_keras
from common.sources.safetensors_meta import TensorSummary, summarize
from common.sources.torch_meta import summarize_checkpoint

log = logging.getLogger(__name__)
# Rescanned every 30 s: a broken file is logged once, not at every scan.
_problems = ChangeLog(log, logging.INFO)

MODEL_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".h5", ".keras", ".pkl", ".onnx", ".gguf")
# Downloads in progress (torch.hub writes to a temporary name, then renames).
PARTIAL_MARKERS = (".partial", ".tmp", ".incomplete")


def scan_model_files(env: Mapping[str, str]) -> list[ModelRecord]:
    records: list[ModelRecord] = []
    for provider, dir_for in FILE_PROVIDER_DIRS.items():
        records.extend(scan_dir(provider, dir_for(env)))
    return records


def scan_dir(provider: str, root: Path) -> list[ModelRecord]:
    """One record per model file; one that cannot be read is listed with status "error"."""
    if not root.is_dir():
        return []
    records = []

    def unlisted(exc: OSError) -> None:  # a folder we may not list: said, not silently skipped
        if exc.filename is None or Path(exc.filename) == root:
            raise exc
        folder = Path(exc.filename)
        _problems.report(str(folder), str(exc), "unreadable model folder %s: %s", folder, exc)
        records.append(ModelRecord(provider=provider, model=_name(root, folder) + "/", path=readable(str(folder)),
                                   status="error", problem=readable(f"cannot list the folder: {exc.strerror}")))

    for dirpath, _dirs, names in os.walk(root, onerror=unlisted):
        for name in sorted(names):
            path = Path(dirpath) / name
            if not name.endswith(MODEL_SUFFIXES) or any(m in name for m in PARTIAL_MARKERS):
                continue
            try:
                records.append(_record(provider, root, path))
            except FileNotFoundError:
                continue  # deleted since the listing, or a dangling link: not a model any more
            except Exception as exc:  # unreadable: shown as such, never hides the other files
                _problems.report(str(path), str(exc), "unreadable model file %s: %s", path, exc)
                records.append(ModelRecord(provider=provider, model=_name(root, path), path=readable(str(path)),
                                           status="error", problem=readable(f"{type(exc).__name__}: {exc}")))
    return sorted(records, key=lambda r: r.model)


def _name(root: Path, path: Path) -> str:
    return readable(path.relative_to(root).as_posix())


def _record(provider: str, root: Path, path: Path) -> ModelRecord:
    st = path.stat()
    record = ModelRecord(provider=provider, model=_name(root, path),
                         model_type=UNKNOWN_TYPE, path=readable(str(path)), size_bytes=st.st_size,
                         vram_estimate_bytes=st.st_size, download_timestamp=st.st_mtime,
                         last_used_timestamp=st.st_atime)
    reader = WEIGHT_READERS.get(path.suffix)
    if reader is not None:
        try:
            reader(record, path)
        except (OSError, ValueError, RecursionError) as exc:
            _problems.report(str(path), str(exc), "no metadata from %s: %s", path, exc)
            # Listed, its estimate the file size; a file cut short is a download not finished.
            record.mark("incomplete" if isinstance(exc, Truncated) else "error", readable(str(exc)))
    return record


def _tensors_into(summarize_file: Callable[[Path], TensorSummary]):
    def read(record: ModelRecord, path: Path) -> None:
        summary = summarize_file(path)
        record.parameters = summary.parameters_at(None)
        record.quantization = summary.dtype
        record.vram_estimate_bytes = summary.tensor_bytes
    return read


def _gguf_into(record: ModelRecord, path: Path) -> None:
    """A GGUF file holds a whole model: parameters, quantization, context and the KV cache's shape."""
    summary = read_gguf(path)
    record.parameters, record.quantization = summary.parameters, summary.quantization
    record.context_length = summary.context_length
    record.vram_estimate_bytes = vram_estimate(record.size_bytes, summary.kv_shape, summary.context_length)


def _keras_tensors(path: Path) -> TensorSummary:
    return summarize_keras(path).tensors


# File suffix -> the reader that fills a record from the weights' metadata.
WEIGHT_READERS = {
    ".safetensors": _tensors_into(summarize),
    ".pth": _tensors_into(summarize_checkpoint), ".pt": _tensors_into(summarize_checkpoint),
    ".bin": _tensors_into(summarize_checkpoint), ".ckpt": _tensors_into(summarize_checkpoint),
    ".h5": _tensors_into(_keras_tensors), ".keras": _tensors_into(_keras_tensors),
    ".gguf": _gguf_into,
}
