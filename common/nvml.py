"""Shared access to NVML through the `pynvml` module (package nvidia-ml-py).

The module is looked up at call time via importlib so tests can put a fake
`pynvml` first on sys.path; nothing else in the exporter imports pynvml.
A missing library or driver is a normal state (no GPU), not an error.
"""
from __future__ import annotations

import importlib
import logging
import threading
import time
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

RETRY_INIT_SECONDS = 60.0


class Nvml:
    def __init__(self, module: ModuleType | None = None):
        self._module = module
        self._lock = threading.Lock()
        self._initialized = False
        self._last_attempt = float("-inf")
        self.init_error: str | None = None

    @property
    def module(self) -> ModuleType | None:
        if self._module is None:
            try:
                self._module = importlib.import_module("pynvml")
            except ImportError as exc:
                self.init_error = f"pynvml not importable: {exc}"
                return None
        return self._module

    def available(self) -> bool:
        """True once nvmlInit succeeded; retried at most once a minute."""
        with self._lock:
            if self._initialized:
                return True
            now = time.monotonic()
            if now - self._last_attempt < RETRY_INIT_SECONDS:
                return False
            self._last_attempt = now
            module = self.module
            if module is None:
                return False
            try:
                module.nvmlInit()
            except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded...
                self.init_error = f"{type(exc).__name__}: {exc}"
                log.info("NVML unavailable: %s", self.init_error)
                return False
            self._initialized = True
            self.init_error = None
            return True

    def cuda_driver_version(self) -> str | None:
        """CUDA version the driver supports, "12.4" style, or None without a usable GPU."""
        if not self.available():
            return None
        try:
            raw = self.module.nvmlSystemGetCudaDriverVersion_v2()
        except Exception:
            return None
        return f"{raw // 1000}.{(raw % 1000) // 10}"


def unavailable_errors(module: ModuleType) -> tuple[type, ...]:
    """What "this driver cannot answer that" looks like, not a failure of the GPU: NotSupported,
    FunctionNotFound (a call newer than the driver), and nvidia-ml-py's NVMLLibraryMismatchError,
    which its unversioned wrappers raise instead of FunctionNotFound."""
    return _classes(module, "NVMLError_NotSupported") + _missing_function_errors(module)


def _missing_function_errors(module: ModuleType) -> tuple[type, ...]:
    return _classes(module, "NVMLError_FunctionNotFound", "NVMLLibraryMismatchError")


def _classes(module: ModuleType, *names: str) -> tuple[type, ...]:
    return tuple(c for c in (getattr(module, n, None) for n in names) if isinstance(c, type))


def running_processes(module: ModuleType, handle, kind: str = "Compute") -> list | None:
    """The GPU's "Compute" or "Graphics" processes through the newest call the driver has:
    the unversioned wrapper (`_v3`, drivers 510+), else `_v2` (older drivers).

    None when neither exists in the driver, the GPU does not support the listing, or we may
    not read it (NoPermission: MIG mode without privileges); any other NVMLError is raised.
    """
    missing = _missing_function_errors(module)
    for name in (f"nvmlDeviceGet{kind}RunningProcesses", f"nvmlDeviceGet{kind}RunningProcesses_v2"):
        call = getattr(module, name, None)
        if call is None:
            continue
        try:
            return call(handle)
        except missing:
            continue
        except module.NVMLError_NotSupported:
            return None
        except module.NVMLError_NoPermission:
            # A MIG GPU's aggregate listing needs privileges a container rarely has (NVML docs
            # of nvmlDeviceGetComputeRunningProcesses_v3): a lasting limit, not a failing GPU.
            return None
    return None


def cpu_only_marker(*dirs: Path | None) -> bool:
    """The platform writes `.cpu-only` in its env or workspace dir when no GPU should be used."""
    return any(d is not None and (d / ".cpu-only").exists() for d in dirs)


_shared: Nvml | None = None


def shared() -> Nvml:
    """One NVML session per process, shared by the GPU and system collectors."""
    global _shared
    if _shared is None:
        _shared = Nvml()
    return _shared
