"""Parameters and dtype of a safetensors file from its header only, never the weights.

The format starts with an 8-byte little-endian header length then a JSON header mapping
tensor names to {dtype, shape, data_offsets}. Files are opened with O_NOATIME where the
kernel allows it, so scanning does not make every model look "used" today.
"""
from __future__ import annotations

import json
import os
import stat
import struct
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the format's own limit
MAX_DIMS = 64  # more than any framework allows (torch's own limit is 64)
MAX_ELEMENTS = 2**63 - 1  # a tensor's element count is an int64 in torch and safetensors
MAX_CACHED_FILES = 20_000

# Parsed headers keyed by (path, size, mtime_ns): a cycle over 500 models re-reads nothing.
_cache: dict[tuple[str, int, int], "TensorSummary"] = {}
_cache_lock = threading.Lock()


# Tensors that only help decode quantized weights (GPTQ/AWQ zeros, scales and group index,
# bitsandbytes absmax and quant state, FP8 scales): not parameters of the model.
_AUX_SUFFIXES = (".qzeros", ".scales", ".g_idx", ".absmax", ".quant_map", ".nested_absmax",
                 ".nested_quant_map", ".SCB", ".weight_format", "_scale", "_scale_inv", ".zeros")
_BNB_4BIT_STATE = (".quant_state.bitsandbytes__nf4", ".quant_state.bitsandbytes__fp4")


@dataclass(frozen=True)
class TensorSummary:
    parameters: int  # elements of the weights, bitsandbytes 4-bit unpacked; packed int32 apart
    tensor_bytes: int
    dtype: str  # the dtype holding most bytes, e.g. "BF16"
    packed_elements: int = 0  # int32 elements of GPTQ/AWQ `*.qweight`: 32/bits parameters each
    data_end: int = 0  # bytes of tensor data the header declares (the end of the last span)

    def parameters_at(self, bits: int | None) -> int:
        """Parameters with packed GPTQ/AWQ weights unpacked at `bits` per weight (default 4)."""
        return self.parameters + self.packed_elements * (32 // (bits or 4))


class Truncated(ValueError):
    """The file ends before its header or its tensors do: a download cut short."""


class NotAFile(OSError):
    """A model path that is a FIFO, socket or device: reading it could block forever."""


def open_fd_noatime(path: Path) -> int:
    """A descriptor reading the regular file `path` without touching its access time where
    possible; NotAFile (an OSError) for anything else, which is never read."""
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one.
    flags = os.O_RDONLY | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | getattr(os, "O_NOATIME", 0))
    except PermissionError:  # O_NOATIME needs file ownership
        fd = os.open(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotAFile(f"not a regular file: {path}")
    return fd


def open_noatime(path: Path):
    """A binary file object reading `path` without touching its access time where possible."""
    return os.fdopen(open_fd_noatime(path), "rb")


def read_noatime(path: Path, size: int | None = None, offset: int = 0) -> bytes:
    """Read without touching the access time (O_NOATIME needs file ownership; else plain)."""
    fd = open_fd_noatime(path)
    try:
        if size is None:
            size = os.fstat(fd).st_size - offset
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def element_count(shape) -> int:
    """Elements of a tensor of `shape` (a list or tuple of sizes, as a file declares it).

    ValueError unless it has at most MAX_DIMS sizes, each a non-negative int (not bool), and
    at most MAX_ELEMENTS elements in all: a hostile header's negative sizes would subtract
    parameters, and thousands of huge ones would take hours to multiply.
    """
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_DIMS:
        raise ValueError(f"a tensor shape of {_length(shape)} dimensions is not plausible")
    count = 1
    for size in shape:
        if type(size) is not int or size < 0:
            raise ValueError(f"shape {str(shape)[:80]} is not a list of sizes "
                             f"({type(size).__name__} {str(size)[:40]} is not a size)")
        count *= size
        if count > MAX_ELEMENTS:
            raise ValueError("a tensor of more than 2**63 elements is not plausible")
    return count


def _length(shape) -> str:
    return str(len(shape)) if isinstance(shape, (list, tuple)) else f"non-list ({type(shape).__name__})"


def read_header(path: Path) -> dict:
    """The JSON header; ValueError when the file is not a safetensors file (or is truncated)."""
    return _read_header(path)[0]


def _read_header(path: Path) -> tuple[dict, int]:
    """The JSON header and the size in bytes of the data that follows it in the file."""
    raw_len = read_noatime(path, 8)
    if len(raw_len) != 8:
        raise ValueError(f"{path.name}: too short for a safetensors file")
    (length,) = struct.unpack("<Q", raw_len)
    if length > MAX_HEADER_BYTES:
        raise ValueError(f"{path.name}: safetensors header of {length} bytes is not plausible")
    raw = read_noatime(path, length, 8)
    if len(raw) != length:
        raise ValueError(f"{path.name}: truncated safetensors header ({len(raw)} of {length} bytes)")
    header = json.loads(raw)
    if not isinstance(header, dict):
        raise ValueError(f"{path.name}: safetensors header is a JSON {type(header).__name__}, not an object")
    return header, path.stat().st_size - 8 - length


def summarize(path: Path) -> TensorSummary:
    """Cached per file version; raises ValueError/OSError for an unreadable file."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    header, data_size = _read_header(path)
    summary = _summarize_header(header)
    if summary.data_end > data_size:  # the header is whole, the weights are not
        raise Truncated(f"{path.name}: truncated safetensors file (tensor data ends at byte {summary.data_end}"
                        f" of the data, the file holds {data_size})")
    with _cache_lock:
        if len(_cache) > MAX_CACHED_FILES:  # files deleted or rewritten since: start over
            _cache.clear()
        _cache[key] = summary
    return summary


def _summarize_header(header: dict) -> TensorSummary:
    """ValueError on a tensor entry that is not {dtype: str, shape: [sizes], data_offsets:
    [start, end]} whose byte span holds exactly its shape of that dtype (the checks the
    safetensors library makes before loading)."""
    params = packed = total_bytes = data_end = 0
    by_dtype: Counter[str] = Counter()
    bnb_4bit = {name.split(".quant_state.")[0] for name in header if name.endswith(_BNB_4BIT_STATE)}
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, offsets = _entry(name, tensor)
        nbytes = offsets[1] - offsets[0]
        total_bytes += nbytes
        data_end = max(data_end, offsets[1])
        by_dtype[dtype] += nbytes
        if name.endswith(_AUX_SUFFIXES) or ".quant_state." in name:
            continue
        count = element_count(shape)
        if name.endswith(".qweight") and dtype == "I32":
            packed += count
        elif name in bnb_4bit:
            params += count * 2  # two 4-bit weights per byte
        else:
            params += count
    dtype = by_dtype.most_common(1)[0][0] if by_dtype else ""
    return TensorSummary(parameters=params, tensor_bytes=total_bytes, dtype=dtype, packed_elements=packed,
                         data_end=data_end)


# Bits per element of the safetensors dtypes (safetensors' Dtype enum); a dtype not listed
# (a newer format) is shown as it is, its span unchecked.
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
              "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
              "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


def _entry(name: str, tensor) -> tuple[str, list[int], tuple[int, int]]:
    if not isinstance(tensor, dict):
        raise ValueError(f"tensor {name!r}: entry is not an object")
    dtype, shape, offsets = tensor.get("dtype"), tensor.get("shape", []), tensor.get("data_offsets", (0, 0))
    if not isinstance(dtype, str) or not dtype:
        raise ValueError(f"tensor {name[:80]!r}: dtype {str(dtype)[:40]} is not a type name")
    if not isinstance(shape, list):
        raise ValueError(f"tensor {name[:80]!r}: shape {str(shape)[:80]} is not a list of sizes")
    try:
        count = element_count(shape)
    except ValueError as exc:
        raise ValueError(f"tensor {name[:80]!r}: {exc}") from None
    if not (isinstance(offsets, (list, tuple)) and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise ValueError(f"tensor {name!r}: data_offsets {offsets!r} are not [start, end]")
    bits = DTYPE_BITS.get(dtype)
    if bits is not None and (count * bits + 7) // 8 != offsets[1] - offsets[0]:
        raise ValueError(f"tensor {name!r}: shape {shape} of {dtype} does not fill data_offsets "
                         f"{list(offsets)} ({offsets[1] - offsets[0]} bytes)")
    return dtype, shape, (offsets[0], offsets[1])


def combine(summaries: list[TensorSummary]) -> TensorSummary | None:
    """One summary for a sharded model (model-00001-of-00004.safetensors ...)."""
    if not summaries:
        return None
    by_dtype: Counter[str] = Counter()
    for s in summaries:
        by_dtype[s.dtype] += s.tensor_bytes
    return TensorSummary(parameters=sum(s.parameters for s in summaries),
                         tensor_bytes=sum(s.tensor_bytes for s in summaries),
                         dtype=by_dtype.most_common(1)[0][0],
                         packed_elements=sum(s.packed_elements for s in summaries))
