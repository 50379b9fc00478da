"""Parameters and dtype of a PyTorch checkpoint (.pth/.pt/.bin/.ckpt), read without torch and
without running any of the pickle's code.

`torch.save` writes either a zip archive (torch >= 1.6: `<name>/data.pkl` plus one entry per
storage) or the legacy stream (magic number, protocol, sys info, then the object pickle).
Either way the object graph is a pickle whose tensors are calls to
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`, with storages named by
persistent ids `('storage', torch.FloatStorage, key, location, numel)`. `_StubUnpickler`
resolves every global to an inert stand-in of ours (`find_class` never imports anything), so
the result is a tree of dicts, lists and `_Tensor(shape, dtype)` records; the storages' bytes
are never read.

Parameter count convention: the tensor elements of the model's weights, counted once per
distinct storage view (tied weights once), BatchNorm running statistics excluded (they are
buffers, not parameters: torchvision's resnet18 checkpoint gives 11,689,512, its documented
count). When the checkpoint wraps the weights (`{"model": ..., "opt": ...}` as fastai's
`Learner.save` writes, or `state_dict` / `model_state_dict`), only the weights are counted.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from common.sources.safetensors_meta import TensorSummary, element_count, open_noatime

MAX_PICKLE_BYTES = 64 * 1024 * 1024  # a state dict's pickle is small; the weights are not in it
MAX_WALK_ITEMS = 2_000_000
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
WEIGHT_KEYS = ("model", "state_dict", "model_state_dict", "module")

# torch storage class -> (safetensors-style dtype name, bytes per element)
STORAGE_DTYPES = {
    "FloatStorage": ("F32", 4), "DoubleStorage": ("F64", 8), "HalfStorage": ("F16", 2),
    "BFloat16Storage": ("BF16", 2), "LongStorage": ("I64", 8), "IntStorage": ("I32", 4),
    "ShortStorage": ("I16", 2), "CharStorage": ("I8", 1), "ByteStorage": ("U8", 1),
    "BoolStorage": ("BOOL", 1), "QInt8Storage": ("QI8", 1), "QUInt8Storage": ("QU8", 1),
    "QInt32Storage": ("QI32", 4), "Float8_e4m3fnStorage": ("F8_E4M3", 1),
    "Float8_e5m2Storage": ("F8_E5M2", 1), "ComplexFloatStorage": ("C64", 8),
}


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass(frozen=True)
class _Storage:
    dtype: str
    itemsize: int
    key: str


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]

    @property
    def elements(self) -> int:
        return element_count(self.shape)


class _Stub:
    """Any other class of the pickle: keeps its arguments and state so tensors inside are found.

    Set up in __new__, since the NEWOBJ opcode calls only `cls.__new__(cls, *args)`.
    """

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        self.args, self.kwargs, self.state = args, dict(kwargs), None
        return self

    def __setstate__(self, state):
        self.state = state

    # Some pickles fill objects with SETITEMS / APPENDS.
    def __setitem__(self, key, value):
        self.kwargs[key] = value

    def append(self, value):
        self.args += (value,)

    def extend(self, values):
        self.args += tuple(values)


class _Dict(dict):
    """OrderedDict stand-in: a dict that also takes attributes (state dicts carry `_metadata`)."""


def _rebuild_tensor(storage, storage_offset=0, size=(), *_rest, **_kw):
    if not isinstance(storage, _Storage):
        raise ValueError("tensor without a storage")
    shape = tuple(size or ())
    element_count(shape)  # ValueError for negative, non-integer or absurdly many sizes
    return _Tensor(storage, int(storage_offset or 0), shape)


def _rebuild_parameter(data, *_rest, **_kw):
    return data


def _rebuild_from_type_v2(func, _new_type, args, _state):
    return func(*args)


_TENSOR_BUILDERS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("collections", "OrderedDict"): _Dict,
}


class _StubUnpickler(pickle.Unpickler):
    def find_class(self, module, name):  # never imports: every global becomes one of ours
        if (module, name) in _TENSOR_BUILDERS:
            return _TENSOR_BUILDERS[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        return _Stub

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and len(pid) >= 3):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        storage_type, key = pid[1], str(pid[2])
        name = storage_type.name if isinstance(storage_type, _StorageType) else "UntypedStorage"
        dtype, itemsize = STORAGE_DTYPES.get(name, (name.removesuffix("Storage") or "?", 1))
        return _Storage(dtype, itemsize, key)


def _load(data: bytes | io.BufferedIOBase):
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    return _StubUnpickler(stream, encoding="latin1").load()


def read_checkpoint(path: Path):
    """The checkpoint's object tree with `_Tensor` leaves; ValueError if it is no torch checkpoint."""
    try:
        with open_noatime(path) as stream:
            return _read_stream(stream)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, TypeError, AttributeError,
            IndexError, KeyError, RecursionError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable torch checkpoint: {type(exc).__name__}: {exc}"[:300]) from None


def _read_stream(stream):
    if zipfile.is_zipfile(stream):
        stream.seek(0)
        with zipfile.ZipFile(stream) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                raise ValueError("a zip without data.pkl is not a torch checkpoint")
            info = archive.getinfo(min(names, key=len))
            if info.file_size > MAX_PICKLE_BYTES:
                raise ValueError(f"data.pkl of {info.file_size} bytes is not plausible")
            return _load(archive.read(info))
    stream.seek(0)
    if _load(stream) != LEGACY_MAGIC:
        raise ValueError("not a torch checkpoint (no zip archive, no legacy magic number)")
    _load(stream)  # protocol version
    _load(stream)  # sys info
    return _load(stream)


def _weights(tree):
    """The model's weights inside a training checkpoint, else the whole tree."""
    if isinstance(tree, dict):
        for key in WEIGHT_KEYS:
            inner = tree.get(key)
            if inner is not None and any(True for _ in _tensors(inner, limit=1)):
                return inner
    return tree


def _tensors(tree, prefix: str = "", limit: int = MAX_WALK_ITEMS):
    """(dotted name, tensor) pairs, depth first, over dicts, sequences and stubs."""
    stack, seen = [(prefix, tree)], 0
    while stack:
        name, node = stack.pop()
        seen += 1
        if seen > MAX_WALK_ITEMS:
            raise ValueError("checkpoint object tree is too large")
        if isinstance(node, _Tensor):
            yield name, node
            limit -= 1
            if limit <= 0:
                return
        elif isinstance(node, dict):
            stack.extend((f"{name}.{k}" if name else str(k), v) for k, v in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{name}.{i}", v) for i, v in enumerate(node))
        elif isinstance(node, _Stub):
            stack.extend((name, part) for part in (node.args, node.kwargs, node.state) if part)


def summarize_checkpoint(path: Path) -> TensorSummary:
    """Parameters, bytes and dominant dtype of the weights; ValueError/OSError if unreadable."""
    tree = _weights(read_checkpoint(Path(path)))
    params = total_bytes = 0
    by_dtype: Counter[str] = Counter()
    counted: set[tuple[str, int, tuple[int, ...]]] = set()
    for name, tensor in _tensors(tree):
        view = (tensor.storage.key, tensor.offset, tensor.shape)
        if view in counted or name.endswith(BUFFER_SUFFIXES):
            continue
        counted.add(view)
        size = tensor.elements * tensor.storage.itemsize
        params += tensor.elements
        total_bytes += size
        by_dtype[tensor.storage.dtype] += size
    if not counted:
        raise ValueError("no tensors in the checkpoint")
    return TensorSummary(parameters=params, tensor_bytes=total_bytes,
                         dtype=by_dtype.most_common(1)[0][0])
