"""Parameters and dtype of a safetensors file from its header only, never the weights.

The format starts with an 8-byte little-endian header length then a JSON header mapping
tensor names to {dtype, shape, data_offsets}. Files are opened with O_NOATIME where the
kernel allows it, so scanning does not make every model look "used" today.
"""
from __future__ import annotations

import json
import os
import struct
import threading
from collections import Counter
from dataclasses import dataclass
from math import prod
from pathlib import Path

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the format's own limit
MAX_CACHED_FILES = 20_000

# Parsed headers keyed by (path, size, mtime_ns): a cycle over 500 models re-reads nothing.
_cache: dict[tuple[str, int, int], "TensorSummary"] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class TensorSummary:
    parameters: int
    tensor_bytes: int
    dtype: str  # the dtype holding most bytes, e.g. "BF16"


def _open_fd_noatime(path: Path) -> int:
    flags = os.O_RDONLY | getattr(os, "O_NOATIME", 0)
    try:
        return os.open(path, flags)
    except PermissionError:  # O_NOATIME needs file ownership
        return os.open(path, os.O_RDONLY)


def open_noatime(path: Path):
    """A binary file object reading `path` without touching its access time where possible."""
    return os.fdopen(_open_fd_noatime(path), "rb")


def read_noatime(path: Path, size: int | None = None, offset: int = 0) -> bytes:
    """Read without touching the access time (O_NOATIME needs file ownership; else plain)."""
    fd = _open_fd_noatime(path)
    try:
        if size is None:
            size = os.fstat(fd).st_size - offset
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def read_header(path: Path) -> dict:
    raw_len = read_noatime(path, 8)
    if len(raw_len) != 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (length,) = struct.unpack("<Q", raw_len)
    if length > MAX_HEADER_BYTES:
        raise ValueError(f"{path}: safetensors header of {length} bytes is not plausible")
    return json.loads(read_noatime(path, length, 8))


def summarize(path: Path) -> TensorSummary:
    """Cached per file version; raises ValueError/OSError for an unreadable file."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    summary = _summarize_header(read_header(path))
    with _cache_lock:
        if len(_cache) > MAX_CACHED_FILES:  # files deleted or rewritten since: start over
            _cache.clear()
        _cache[key] = summary
    return summary


def _summarize_header(header: dict) -> TensorSummary:
    params = 0
    total_bytes = 0
    by_dtype: Counter[str] = Counter()
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        count = prod(tensor.get("shape") or [])
        start, end = tensor.get("data_offsets", (0, 0))
        params += count
        total_bytes += end - start
        by_dtype[tensor.get("dtype", "?")] += end - start
    dtype = by_dtype.most_common(1)[0][0] if by_dtype else ""
    return TensorSummary(parameters=params, tensor_bytes=total_bytes, dtype=dtype)


def combine(summaries: list[TensorSummary]) -> TensorSummary | None:
    """One summary for a sharded model (model-00001-of-00004.safetensors ...)."""
    if not summaries:
        return None
    by_dtype: Counter[str] = Counter()
    for s in summaries:
        by_dtype[s.dtype] += s.tensor_bytes
    return TensorSummary(parameters=sum(s.parameters for s in summaries),
                         tensor_bytes=sum(s.tensor_bytes for s in summaries),
                         dtype=by_dtype.most_common(1)[0][0])
