"""Parameters, quantization, context length and KV shape of a GGUF file from its header only.

GGUF (llama.cpp's format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
"GGUF", version (u32), tensor count and metadata count (u64; u32 in version 1), then
key/value metadata (typed values, arrays of them), then per tensor: name, dimensions, type,
offset. We read it front to back through one buffered O_NOATIME descriptor (a scan must not
make a model look used), with every count and length bounded, so a truncated or hostile file
is a ValueError and never a huge allocation. The weights are never read.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, replace
from math import prod
from pathlib import Path
from typing import BinaryIO

from common.sources.model_record import KvShape
from common.sources.safetensors_meta import Truncated, open_fd_noatime

MAGIC = b"GGUF"
MAX_COUNT = 10_000_000  # metadata entries, tensors, array items
MAX_STRING = 16 * 1024 * 1024
MAX_DIMS = 8
# Scalar value types: struct format by GGUF type id; 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# llama.cpp's general.file_type (enum llama_ftype) as Ollama and the model hubs name them.
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
              23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
              30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4"}
# Tensor types (enum ggml_type), for the dominant type when general.file_type is absent.
TENSOR_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
                10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
                17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
                23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16",
                34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4"}


# Bytes per block and elements per block of the common ggml tensor types, to know where the
# last tensor ends (a download cut short is shorter).
_BLOCKS = {0: (4, 1), 1: (2, 1), 30: (2, 1), 24: (1, 1), 25: (2, 1), 26: (4, 1), 27: (8, 1), 28: (8, 1),
           2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32), 9: (40, 32), 10: (84, 256),
           11: (110, 256), 12: (144, 256), 13: (176, 256), 14: (210, 256), 15: (292, 256)}
DEFAULT_ALIGNMENT = 32


@dataclass(frozen=True)
class GgufSummary:
    parameters: int
    quantization: str  # "Q4_K_M" from general.file_type, else the most common tensor type
    architecture: str
    context_length: int | None
    kv_shape: KvShape | None


class _Reader:
    def __init__(self, fh: BinaryIO, name: str, size: int):
        self.fh, self.name, self.size = fh, name, size

    def skip(self, size: int) -> None:
        if self.fh.tell() + size > self.size:
            raise Truncated(f"{self.name}: truncated GGUF header")
        self.fh.seek(size, os.SEEK_CUR)

    def take(self, size: int) -> bytes:
        data = self.fh.read(size)
        if len(data) != size:
            raise Truncated(f"{self.name}: truncated GGUF header")
        return data

    def scalar(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def count(self, fmt: str = "<Q") -> int:
        value = self.scalar(fmt)
        if value > MAX_COUNT:
            raise ValueError(f"{self.name}: a count of {value} is not plausible")
        return value

    def string(self) -> str:
        size = self.scalar("<Q")
        if size > MAX_STRING:
            raise ValueError(f"{self.name}: a string of {size} bytes is not plausible")
        return self.take(size).decode("utf-8", "replace")

    def value(self, kind: int, keep: bool = True):
        """One typed value; arrays are skipped (kept only when short and `keep`)."""
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = self.scalar("<I"), self.count()
            keep = keep and count <= 1024
            if item_kind in _SCALARS and not keep:  # skipped without reading (token scores...)
                self.skip(struct.calcsize(_SCALARS[item_kind]) * count)
                return None
            items = [self.value(item_kind, keep=False) for _ in range(count)]
            return items if keep else None
        raise ValueError(f"{self.name}: unknown GGUF value type {kind}")


def read_gguf(path: Path) -> GgufSummary:
    """The summary of one GGUF file; ValueError when it is not one (or is cut short), OSError
    when it cannot be read."""
    fd = open_fd_noatime(path)
    with os.fdopen(fd, "rb", buffering=1 << 20) as fh:
        return _parse(_Reader(fh, Path(path).name, os.fstat(fd).st_size))


def summarize_gguf_set(paths: list[Path]) -> GgufSummary:
    """One model split over several files (`-00001-of-00003.gguf`): the first file's metadata,
    every file's tensors."""
    first, *rest = [read_gguf(p) for p in paths]
    return replace(first, parameters=first.parameters + sum(s.parameters for s in rest))


def _parse(r: _Reader) -> GgufSummary:
    if r.take(4) != MAGIC:
        raise ValueError(f"{r.name}: not a GGUF file")
    version = r.scalar("<I")
    if version not in (1, 2, 3):
        raise ValueError(f"{r.name}: GGUF version {version} is not known")
    count_fmt = "<I" if version == 1 else "<Q"
    tensors, entries = r.count(count_fmt), r.count(count_fmt)
    meta = {}
    for _ in range(entries):
        key = r.string()
        meta[key] = r.value(r.scalar("<I"))
    params, by_type, data_end, names = 0, {}, 0, set()
    for _ in range(tensors):
        name = r.string()
        if name in names:  # llama.cpp refuses such a file ("duplicate tensor name")
            raise ValueError(f"{r.name}: tensor {name!r} is listed twice")
        names.add(name)
        dims = r.scalar("<I")
        if dims > MAX_DIMS:
            raise ValueError(f"{r.name}: a tensor of {dims} dimensions is not plausible")
        shape = [r.scalar(count_fmt) for _ in range(dims)]
        kind = r.scalar("<I")
        offset = r.scalar("<Q")  # in the data section
        count = prod(shape)
        params += count
        by_type[kind] = by_type.get(kind, 0) + count
        block_bytes, block_count = _BLOCKS.get(kind, (0, 1))
        data_end = max(data_end, offset + count * block_bytes // block_count)
    alignment = meta.get("general.alignment")
    alignment = alignment if isinstance(alignment, int) and alignment > 0 else DEFAULT_ALIGNMENT
    data_start = -(-r.fh.tell() // alignment) * alignment
    if tensors and r.size < data_start + data_end:
        raise Truncated(f"{r.name}: truncated GGUF file ({r.size} of at least {data_start + data_end} bytes)")
    arch = str(meta.get("general.architecture") or "")
    file_type = meta.get("general.file_type")
    if isinstance(file_type, int) and file_type in FILE_TYPES:
        quantization = FILE_TYPES[file_type]
    else:
        dominant = max(by_type, key=by_type.get, default=None)
        quantization = TENSOR_TYPES.get(dominant, "") if dominant is not None else ""
    return GgufSummary(params, quantization, arch, metadata_int(meta.get(f"{arch}.context_length")),
                       kv_shape_from_metadata(meta, arch))


def metadata_int(value) -> int | None:
    """A positive count from GGUF metadata (or Ollama's model_info, the same keys); per-layer
    arrays (head_count_kv in some architectures) give their largest value."""
    if isinstance(value, list):
        value = max((v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)), default=None)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return int(value)


def kv_shape_from_metadata(meta: dict, arch: str) -> KvShape | None:
    """The KV cache's shape from `<arch>.block_count`, `.attention.head_count(_kv)`,
    `.attention.key_length` (else embedding_length / head_count)."""
    layers = metadata_int(meta.get(f"{arch}.block_count"))
    heads = metadata_int(meta.get(f"{arch}.attention.head_count"))
    if not (layers and heads):
        return None
    kv_heads = metadata_int(meta.get(f"{arch}.attention.head_count_kv")) or heads
    head_dim = metadata_int(meta.get(f"{arch}.attention.key_length"))
    if not head_dim:
        embedding = metadata_int(meta.get(f"{arch}.embedding_length"))
        head_dim = embedding // heads if embedding else None
    return KvShape(layers, kv_heads, head_dim) if head_dim else None
