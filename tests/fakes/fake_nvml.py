"""Load a fresh copy of the fake `pynvml` in-process, for unit tests.

Each call gives an independent module (its own scenario and call counters) without
touching sys.modules["pynvml"], so the real module stays importable beside it.
The exporter subprocess gets the fake the other way: FAKE_NVML_DIR first on PYTHONPATH.
"""
from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType

FAKE_NVML_DIR = Path(__file__).resolve().parent / "nvml"
_serial = itertools.count()


def load_fake_pynvml(**scenario) -> ModuleType:
    """A new fake pynvml configured with `fake_configure(**scenario)`."""
    spec = importlib.util.spec_from_file_location(f"fake_pynvml_{next(_serial)}",
                                                  FAKE_NVML_DIR / "pynvml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.fake_configure(**scenario)
    return module
