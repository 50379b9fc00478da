"""Parameters, dtype and model class of Keras files (.keras, .h5), read with h5py, never Keras.

- `.keras` (Keras 3): a zip of `config.json` (the model's class and layers), `metadata.json`
  and `model.weights.h5`, whose datasets under `layers/` are the model's variables.
- `.h5` full model (legacy HDF5 format): the root's `model_config` attribute (JSON) and the
  variables under `model_weights/`.
- `.h5` / `.weights.h5` weights only (Keras applications' downloads, `save_weights`): the
  variables at the root or under `layers/`.
Only dataset shapes and dtypes are read. Parameters follow Keras' own `count_params()`: every
layer variable (BatchNorm's moving statistics included), optimizer variables
(`optimizer/`, `optimizer_weights/`) left out.
"""
from __future__ import annotations

import json
import zipfile
from collections import Counter
from dataclasses import dataclass
from math import prod
from pathlib import Path

from common.sources.safetensors_meta import TensorSummary, open_noatime

MAX_CONFIG_BYTES = 16 * 1024 * 1024
OPTIMIZER_GROUPS = ("optimizer", "optimizer_weights")
NUMPY_DTYPES = {"float32": "F32", "float16": "F16", "float64": "F64", "bfloat16": "BF16",
                "int8": "I8", "uint8": "U8", "int16": "I16", "int32": "I32", "int64": "I64", "bool": "BOOL"}


@dataclass(frozen=True)
class KerasSummary:
    tensors: TensorSummary
    class_name: str  # the model's class ("Functional", "Sequential"...), "" when not recorded


def _variables(group) -> TensorSummary:
    import h5py  # only when a Keras file is there: h5py costs the exporter memory

    params = total_bytes = 0
    by_dtype: Counter[str] = Counter()

    def visit(name: str, obj) -> None:
        nonlocal params, total_bytes
        if not isinstance(obj, h5py.Dataset) or name.split("/", 1)[0] in OPTIMIZER_GROUPS:
            return
        count = prod(obj.shape or ())
        size = count * obj.dtype.itemsize
        params += count
        total_bytes += size
        by_dtype[NUMPY_DTYPES.get(obj.dtype.name, obj.dtype.name.upper())] += size

    group.visititems(visit)
    if not by_dtype:
        raise ValueError("no weights in the Keras file")
    return TensorSummary(params, total_bytes, by_dtype.most_common(1)[0][0])


def _class_name(config_text: str | bytes | None) -> str:
    if not config_text:
        return ""
    config = json.loads(config_text)
    return str(config.get("class_name", "")) if isinstance(config, dict) else ""


def summarize_keras(path: Path) -> KerasSummary:
    """ValueError/OSError for a file that is not a readable Keras model or weights file."""
    try:
        with open_noatime(Path(path)) as stream:
            return _summarize_stream(stream)
    except (KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise ValueError(f"unreadable Keras file: {type(exc).__name__}: {exc}"[:300]) from None


def _summarize_stream(stream) -> KerasSummary:
    import h5py

    if zipfile.is_zipfile(stream):
        stream.seek(0)
        with zipfile.ZipFile(stream) as archive:
            config = archive.getinfo("config.json")
            weights = archive.getinfo("model.weights.h5")
            if config.file_size > MAX_CONFIG_BYTES:
                raise ValueError("the Keras archive's config.json is too large to inspect")
            class_name = _class_name(archive.read(config))
            # Read in place from the archive: h5py seeks to the few blocks with the variables'
            # shapes, so a member that inflates to gigabytes never lands in memory.
            with archive.open(weights) as member, h5py.File(member, "r") as h5:
                return KerasSummary(_variables(h5), class_name)
    stream.seek(0)
    with h5py.File(stream, "r") as h5:
        class_name = _class_name(h5.attrs.get("model_config"))
        return KerasSummary(_variables(h5["model_weights"] if "model_weights" in h5 else h5), class_name)
