"""NVIDIA GPUs through NVML: identity, peak FLOPS, usage, memory, temperature, power, processes.

Only NVML calls on the scrape path (a few ms per GPU on an H100, see
tests/fixtures/nvml/h100-under-load.json), no subprocess.

Failure policy, per scrape:
- no NVML library or driver, or a `.cpu-only` marker: `wordslab_gpus 0`, success 1 (normal);
- a field raising NVMLError_NotSupported, or a call the driver does not have
  (NVMLError_FunctionNotFound, or pynvml's NVMLLibraryMismatchError for its unversioned
  wrappers on a driver older than the library): that series is omitted for that GPU, success 1
  (data-center GPUs have no fan, WSL gives no per-process memory, drivers before 510 have no
  `_v3` process listing: the `_v2` call is used instead; a MIG GPU in a container without
  privileges answers the process listing with NoPermission: no per-process series);
- any other NVMLError (GPU lost, timeout, no permission), or an error of the binding itself:
  that series or GPU is omitted,
  the other GPUs and fields are still published, and `wordslab_collector_success{collector="gpu"}`
  is 0 so an alert or panel can show the GPU is unhealthy.
"""
from __future__ import annotations

import os
from types import ModuleType
from typing import Any, Callable, Iterable

import psutil
from prometheus_client.core import Metric

from common.config import Settings
from exporter.gpu_specs import theoretical_flops
from common.nvml import Nvml, cpu_only_marker, running_processes, shared, unavailable_errors
from exporter.collectors.base import PartialCollection, WordslabCollector, gauge

GPU = ["gpu"]


class _Reader:
    """Calls NVML, turning NotSupported and missing functions into None and recording every
    other NVML error."""

    def __init__(self, module: ModuleType):
        self.nvml = module
        self.errors: list[str] = []
        # What "this driver cannot answer that" looks like: not a failure of the GPU.
        self.unavailable = unavailable_errors(module)

    def get(self, what: str, fn: Callable[..., Any], *args) -> Any:
        try:
            return fn(*args)
        except self.unavailable:
            return None
        except Exception as exc:  # NVMLError, or the binding's own (a strict UTF-8 decode)
            self.errors.append(f"{what}: {type(exc).__name__}: {exc}")
            return None


class _Families:
    def __init__(self):
        self.nvml_available = gauge(
            "gpu_nvml_available", "1 if the NVIDIA management library (driver) answers, 0 if it is "
            "missing: no NVIDIA GPU or no driver in this VM. The reason wordslab_gpus can be 0.", [])
        self.gpus = gauge(
            "gpus", "Usable NVIDIA GPUs: 0 without GPU, without NVML, or with a .cpu-only marker "
            "in WORDSLAB_NOTEBOOKS_ENV or WORDSLAB_WORKSPACE.", [])
        self.info = gauge("gpu_info", "GPU identity, value 1.", ["gpu", "uuid", "name", "driver_version"])
        self.flops = gauge(
            "gpu_theoretical_flops", "Vendor peak dense throughput of the GPU model, operations per "
            "second (int8: integer ops); tensor cores with FP32 accumulate except fp32. "
            "See docs/gpu-flops.md; absent for unknown models.", ["gpu", "precision"])
        self.utilization = gauge(
            "gpu_utilization_ratio", "Fraction of the last sample period (1/6 to 1 s) during which "
            "one or more kernels ran on the GPU.", GPU)
        self.memory_total = gauge("gpu_memory_total_bytes", "GPU memory installed.", GPU)
        self.memory_used = gauge("gpu_memory_used_bytes", "GPU memory in use, including the "
                                 "driver's reservation (total - free).", GPU)
        self.temperature = gauge("gpu_temperature_celsius", "GPU core temperature.", GPU)
        self.power = gauge("gpu_power_watts", "GPU board power draw.", GPU)
        self.power_limit = gauge("gpu_power_limit_watts", "Power limit the driver enforces.", GPU)
        self.process_memory = gauge(
            "gpu_process_memory_bytes", "GPU memory used by a compute or graphics process. "
            "Absent where the driver cannot tell (Windows WDDM).", ["gpu", "pid", "process", "user"])

    def __iter__(self) -> Iterable[Metric]:
        return iter(vars(self).values())


class GpuCollector(WordslabCollector):
    name = "gpu"

    def __init__(self, settings: Settings, nvml: Nvml | None = None):
        super().__init__(settings)
        self.nvml = nvml or shared()

    def collect_metrics(self) -> Iterable[Metric]:
        families = _Families()
        available = self.nvml.available()
        families.nvml_available.add_metric([], 1.0 if available else 0.0)
        cpu_only = cpu_only_marker(self.settings.notebooks_env, self.settings.workspace)
        errors: list[str] = []
        usable = 0
        if available and not cpu_only:
            reader = _Reader(self.nvml.module)
            usable = _read_gpus(reader, families)
            errors = reader.errors
        families.gpus.add_metric([], usable)
        if errors:
            raise PartialCollection(families, errors)
        return list(families)


def _read_gpus(reader: _Reader, families: _Families) -> int:
    """Fill the per-GPU families; returns how many GPUs answered."""
    nvml = reader.nvml
    count = reader.get("device count", nvml.nvmlDeviceGetCount) or 0
    driver = reader.get("driver version", nvml.nvmlSystemGetDriverVersion) or ""
    usable = 0
    for index in range(count):
        handle = reader.get(f"gpu {index} handle", nvml.nvmlDeviceGetHandleByIndex, index)
        if handle is not None:
            _read_gpu(reader, families, str(index), handle, driver)
            usable += 1
    return usable


def _read_gpu(reader: _Reader, f: _Families, gpu: str, handle, driver: str) -> None:
    nvml = reader.nvml

    def get(what: str, fn: Callable[..., Any], *args) -> Any:
        return reader.get(f"gpu {gpu} {what}", fn, handle, *args)

    name = get("name", nvml.nvmlDeviceGetName) or ""
    uuid = get("uuid", nvml.nvmlDeviceGetUUID) or ""
    f.info.add_metric([gpu, uuid, name, driver], 1.0)
    for precision, value in theoretical_flops(name).items():
        f.flops.add_metric([gpu, precision], value)

    memory = get("memory", nvml.nvmlDeviceGetMemoryInfo)
    if memory is not None:
        f.memory_total.add_metric([gpu], float(memory.total))
        f.memory_used.add_metric([gpu], float(memory.used))
    utilization = get("utilization", nvml.nvmlDeviceGetUtilizationRates)
    if utilization is not None:
        f.utilization.add_metric([gpu], utilization.gpu / 100.0)
    temperature = get("temperature", nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU)
    if temperature is not None:
        f.temperature.add_metric([gpu], float(temperature))
    power = get("power", nvml.nvmlDeviceGetPowerUsage)
    if power is not None:
        f.power.add_metric([gpu], power / 1000.0)  # NVML answers milliwatts
    limit = get("power limit", nvml.nvmlDeviceGetEnforcedPowerLimit)
    if limit is not None:
        f.power_limit.add_metric([gpu], limit / 1000.0)

    processes = [proc for kind in ("Compute", "Graphics")
                 for proc in get(f"{kind.lower()} processes", lambda h, k=kind: running_processes(nvml, h, k)) or []]
    for pid, used in _memory_by_pid(processes).items():
        process, user = _process_identity(nvml, pid)
        f.process_memory.add_metric([gpu, str(pid), process, user], float(used))


def _memory_by_pid(processes: list) -> dict[int, int]:
    """One figure per pid: a context listed as both compute and graphics counts once,
    a process with several MIG instances on this GPU is summed."""
    contexts: dict[tuple, int] = {}
    for proc in processes:
        if proc.usedGpuMemory is None:  # not known to the driver (WDDM)
            continue
        key = (proc.pid, getattr(proc, "gpuInstanceId", None), getattr(proc, "computeInstanceId", None))
        contexts[key] = max(contexts.get(key, 0), proc.usedGpuMemory)
    by_pid: dict[int, int] = {}
    for (pid, _, _), used in contexts.items():
        by_pid[pid] = by_pid.get(pid, 0) + used
    return by_pid


def _process_identity(nvml: ModuleType, pid: int) -> tuple[str, str]:
    """(name, user) from /proc when the pid is in our namespace, else NVML's name and "unknown"."""
    try:
        process = psutil.Process(pid)
        return process.name(), process.username()
    except psutil.Error:
        pass
    try:
        name = nvml.nvmlSystemGetProcessName(pid)
    except UnicodeDecodeError as exc:  # nvidia-ml-py decodes strictly: a Latin-1 path is still a name
        name = exc.object.decode("utf-8", "surrogateescape")  # shown escaped (common.readable)
    except nvml.NVMLError:
        # A process may exit between the listing and here: NotFound is normal, not a failure.
        return "unknown", "unknown"
    return os.path.basename(name) or "unknown", "unknown"
