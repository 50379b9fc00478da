"""Weights kept as plain files: PyTorch hub checkpoints, fastai and Keras model folders.

One file is one model (its path relative to the provider's folder is its name). These
formats are pickles or HDF5 we must not load, so parameters are only known for
safetensors files (from the header); the VRAM estimate is the file size.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

from common.sources.model_dirs import FILE_PROVIDER_DIRS
from common.sources.model_record import UNKNOWN_TYPE, ModelRecord
from common.sources.safetensors_meta import summarize

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".h5", ".keras", ".pkl", ".onnx", ".gguf")
# Downloads in progress (torch.hub writes to a temporary name, then renames).
PARTIAL_MARKERS = (".partial", ".tmp", ".incomplete")


def scan_model_files(env: Mapping[str, str]) -> list[ModelRecord]:
    records: list[ModelRecord] = []
    for provider, dir_for in FILE_PROVIDER_DIRS.items():
        records.extend(scan_dir(provider, dir_for(env)))
    return records


def scan_dir(provider: str, root: Path) -> list[ModelRecord]:
    if not root.is_dir():
        return []
    records = []
    for dirpath, _dirs, names in os.walk(root):
        for name in sorted(names):
            path = Path(dirpath) / name
            if not name.endswith(MODEL_SUFFIXES) or any(m in name for m in PARTIAL_MARKERS):
                continue
            try:
                records.append(_record(provider, root, path))
            except OSError as exc:  # vanished or unreadable: skip this one file
                log.info("skipping %s: %s", path, exc)
    return sorted(records, key=lambda r: r.model)


def _record(provider: str, root: Path, path: Path) -> ModelRecord:
    st = path.stat()
    record = ModelRecord(provider=provider, model=path.relative_to(root).as_posix(),
                         model_type=UNKNOWN_TYPE, path=str(path), size_bytes=st.st_size,
                         vram_estimate_bytes=st.st_size, download_timestamp=st.st_mtime,
                         last_used_timestamp=st.st_atime)
    if path.suffix == ".safetensors":
        try:
            summary = summarize(path)
        except (OSError, ValueError) as exc:
            log.info("unreadable safetensors %s: %s", path, exc)
        else:
            record.parameters = summary.parameters
            record.quantization = summary.dtype
            record.vram_estimate_bytes = summary.tensor_bytes
    return record
