"""A fake `pynvml` that replays what real NVML answered on an H100 under load.

Put this directory first on PYTHONPATH and `import pynvml` gets this module. The
errors and constants are the real nvidia-ml-py ones (loaded from site-packages), so
`except pynvml.NVMLError_NotSupported` behaves exactly as with a real GPU, and the
structs returned (c_nvmlMemory_t, c_nvmlUtilization_t, process objects) are the
real module's types.

Scenario, read from the environment at import (the exporter subprocess) or set with
`fake_configure(...)` (unit tests):
  FAKE_NVML_FIXTURE     recorded JSON (default tests/fixtures/nvml/h100-under-load.json)
  FAKE_NVML_GPUS        number of GPUs, clones of the recorded device (other index/uuid/bus id)
  FAKE_NVML_NO_LIBRARY  "1": nvmlInit raises NVMLError_LibraryNotFound, as without a driver
  FAKE_NVML_FAIL        "call[:after[:ErrorClass]]": `call` succeeds `after` times, then
                        raises ErrorClass (default NVMLError_Unknown) on every later call
  FAKE_NVML_ERRORS      JSON {"call[index]" or "call": "NVMLError_X"} added to the
                        fixture's "errors" section (recorded as "call[0]", applied to every clone);
                        a driver before 510: {"nvmlDeviceGetComputeRunningProcesses_v3":
                        "NVMLError_FunctionNotFound"} (the unversioned call then raises
                        NVMLLibraryMismatchError, `_v2` answers, as with nvidia-ml-py)
  FAKE_NVML_PROCESSES   JSON {"index": [{"pid":..,"usedGpuMemory":..,"_process_name":..}]}
                        replacing the recorded compute processes of those GPUs
  FAKE_NVML_REPLAY_TIMING  "1": each call sleeps the wall time recorded for it
"""
from __future__ import annotations

import copy
import importlib.machinery
import importlib.util
import json
import os
import sys
import threading
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
DEFAULT_FIXTURE = _HERE.parents[1] / "fixtures" / "nvml" / "h100-under-load.json"


def _load_real_pynvml():
    """The installed nvidia-ml-py module, whatever shadows its name on sys.path."""
    search = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("pynvml", search)
    if spec is None or spec.origin is None:
        raise ImportError("the fake pynvml needs the real nvidia-ml-py installed for its errors")
    loaded = sys.modules.get("pynvml")
    if loaded is not None and getattr(loaded, "__file__", None) == spec.origin:
        return loaded  # the real module is already imported: share its error classes
    # Loaded in-process under another name (unit tests), the real one may take its own name.
    name = "pynvml" if __name__ != "pynvml" and loaded is None else "_pynvml_real"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, spec.origin)
        module = importlib.util.module_from_spec(spec)
        # Its error classes are generated from sys.modules[__name__] at import.
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_real = _load_real_pynvml()

# Constants and the whole NVMLError hierarchy, identical objects to the real module's.
for _name in dir(_real):
    if _name.startswith(("NVML_", "NVMLError")):
        globals()[_name] = getattr(_real, _name)
NVMLError = _real.NVMLError
NVMLLibraryMismatchError = _real.NVMLLibraryMismatchError  # raised by unversioned wrappers, see below
c_nvmlMemory_t = _real.c_nvmlMemory_t
c_nvmlUtilization_t = _real.c_nvmlUtilization_t
c_nvmlBAR1Memory_t = _real.c_nvmlBAR1Memory_t
nvmlFriendlyObject = _real.nvmlFriendlyObject

_SENSORS = {NVML_TEMPERATURE_GPU: "GPU"}
_CLOCKS = {NVML_CLOCK_GRAPHICS: "GRAPHICS", NVML_CLOCK_SM: "SM", NVML_CLOCK_MEM: "MEM"}
# The recording named a few timings differently from the calls.
_TIMING_KEYS = {"nvmlDeviceGetTemperature(GPU)": "temp", "nvmlDeviceGetClockInfo(SM)": "clockSM",
                "nvmlDeviceGetMaxClockInfo(SM)": "maxclockSM", "nvmlDeviceGetClockInfo(MEM)": "clockMEM",
                "nvmlDeviceGetMaxClockInfo(MEM)": "maxclockMEM"}


class _Handle:
    """Stands for the real opaque c_nvmlDevice_t pointer."""

    def __init__(self, index: int):
        self.index = index

    def __repr__(self):
        return f"<fake nvmlDevice {self.index}>"


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.fixture: dict = {}
        self.devices: list[dict] = []
        self.errors: dict[str, str] = {}
        self.fail: tuple[str, int, str] | None = None
        self.no_library = False
        self.replay_timing = False
        self.timing: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.init_count = 0


_state = _State()


def _error_class(text: str):
    """'NVMLError_NotSupported: Not Supported (value=3)' -> the real NVMLError_NotSupported."""
    name = text.split(":", 1)[0].strip()
    cls = getattr(_real, name, None)
    if not (isinstance(cls, type) and issubclass(cls, _real.NVMLError)):
        raise ValueError(f"fake pynvml: {name!r} is not an NVMLError class of nvidia-ml-py")
    return cls


def _clone_device(recorded: dict, index: int) -> dict:
    device = copy.deepcopy(recorded)
    if index:
        uuid = device["nvmlDeviceGetUUID"]
        device["nvmlDeviceGetUUID"] = uuid[:-4] + f"{index:04x}"
        pci = device.get("nvmlDeviceGetPciInfo")
        if pci:
            slot = pci.get("device", 0) + index
            pci["device"] = slot
            pci["busId"] = pci["busId"][:-4] + f"{slot:02x}.0"
            pci["busIdLegacy"] = pci["busIdLegacy"][:-4] + f"{slot:02x}.0"
    return device


def fake_configure(fixture: str | Path | None = None, gpus: int | None = None,
                   no_library: bool = False, fail: str | None = None,
                   errors: dict[str, str] | None = None,
                   processes: dict[int, list[dict]] | None = None,
                   replay_timing: bool = False) -> None:
    """Set the whole scenario (see the module docstring); resets call counters."""
    data = json.loads(Path(fixture or DEFAULT_FIXTURE).read_text())
    calls = data["calls"]
    recorded = calls["devices"]
    count = len(recorded) if gpus is None else int(gpus)
    if count < 0:
        raise ValueError("fake pynvml: the number of GPUs cannot be negative")
    devices = [_clone_device(recorded[i % len(recorded)], i) for i in range(count)]
    for index, procs in (processes or {}).items():
        devices[int(index)]["nvmlDeviceGetComputeRunningProcesses"] = list(procs)
    table: dict[str, str] = {}
    for key, text in data.get("errors", {}).items():
        call, _, _ = key.partition("[")
        for i in range(count):  # the clones share the recorded device's limits
            table[f"{call}[{i}]"] = text
    table.update(errors or {})
    for text in table.values():
        _error_class(text)
    parsed_fail = None
    if fail:
        call, _, rest = fail.partition(":")
        after, _, cls = rest.partition(":")
        parsed_fail = (call, int(after or 0), cls or "NVMLError_Unknown")
        _error_class(parsed_fail[2])
    with _state.lock:
        _state.fixture = {k: v for k, v in calls.items() if k != "devices"}
        _state.devices = devices
        _state.errors = table
        _state.fail = parsed_fail
        _state.no_library = no_library
        _state.replay_timing = replay_timing
        _state.timing = data.get("timing_ms", {})
        _state.calls = {}


def fake_set_processes(index: int, processes: list[dict], kind: str = "Compute") -> None:
    """Change one GPU's "Compute" or "Graphics" processes between scrapes (one exits or starts)."""
    with _state.lock:
        _state.devices[index][f"nvmlDeviceGet{kind}RunningProcesses"] = list(processes)


def fake_call_count(call: str) -> int:
    with _state.lock:
        return _state.calls.get(call, 0)


def _configure_from_env() -> None:
    env = os.environ
    fake_configure(
        fixture=env.get("FAKE_NVML_FIXTURE") or None,
        gpus=int(env["FAKE_NVML_GPUS"]) if env.get("FAKE_NVML_GPUS") else None,
        no_library=env.get("FAKE_NVML_NO_LIBRARY") == "1",
        fail=env.get("FAKE_NVML_FAIL") or None,
        errors=json.loads(env["FAKE_NVML_ERRORS"]) if env.get("FAKE_NVML_ERRORS") else None,
        processes=json.loads(env["FAKE_NVML_PROCESSES"]) if env.get("FAKE_NVML_PROCESSES") else None,
        replay_timing=env.get("FAKE_NVML_REPLAY_TIMING") == "1",
    )


def _enter(call: str, index: int | None = None, key: str | None = None) -> None:
    """Bookkeeping every fake call does: init check, injected failure, recorded errors, timing."""
    key = key or call
    with _state.lock:
        if call != "nvmlInit" and _state.init_count == 0:
            raise NVMLError_Uninitialized()
        seen = _state.calls.get(call, 0)
        _state.calls[call] = seen + 1
        error = None
        if _state.fail and _state.fail[0] == call and seen >= _state.fail[1]:
            error = _state.fail[2]
        elif index is not None:
            error = _state.errors.get(f"{key}[{index}]") or _state.errors.get(key)
        else:
            error = _state.errors.get(key)
        delay = 0.0
        if _state.replay_timing:
            timing_key = _TIMING_KEYS.get(key, key)
            delay = _state.timing.get(f"{timing_key}[0]" if index is not None else timing_key, 0.0)
    if delay:
        time.sleep(delay / 1000.0)
    if error:
        raise _error_class(error)()


def _device(call: str, handle: _Handle, key: str | None = None):
    key = key or call
    _enter(call, handle.index, key)
    with _state.lock:
        value = _state.devices[handle.index].get(key)
    if value is None:
        # Recorded as null: real NVML raised for it; without a recorded error it is unsupported.
        raise NVMLError_NotSupported()
    return copy.deepcopy(value)


def _system(call: str):
    _enter(call)
    with _state.lock:
        return _state.fixture[call]


# --- init and system -----------------------------------------------------------------

def nvmlInit():
    nvmlInitWithFlags(0)


def nvmlInitWithFlags(flags):
    with _state.lock:
        missing = _state.no_library
    if missing:  # what the real module raises when libnvidia-ml.so.1 cannot be loaded
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    _enter("nvmlInit")
    with _state.lock:
        _state.init_count += 1


def nvmlShutdown():
    _enter("nvmlShutdown")
    with _state.lock:
        _state.init_count -= 1


def nvmlSystemGetDriverVersion():
    return _system("nvmlSystemGetDriverVersion")


def nvmlSystemGetCudaDriverVersion():
    return _system("nvmlSystemGetCudaDriverVersion_v2")


def nvmlSystemGetCudaDriverVersion_v2():
    return _system("nvmlSystemGetCudaDriverVersion_v2")


def nvmlSystemGetNVMLVersion():
    return _system("nvmlSystemGetNVMLVersion")


def nvmlSystemGetProcessName(pid):
    _enter("nvmlSystemGetProcessName")
    with _state.lock:
        for device in _state.devices:
            for proc in (device.get("nvmlDeviceGetComputeRunningProcesses", [])
                         + device.get("nvmlDeviceGetGraphicsRunningProcesses", [])):
                if proc["pid"] == pid and proc.get("_process_name"):
                    # nvidia-ml-py's convertStrBytes decodes the C string strictly as UTF-8: a
                    # name given with surrogate escapes (bytes that are not UTF-8) raises as there.
                    return proc["_process_name"].encode("utf-8", "surrogateescape").decode()
    raise NVMLError_NotFound()


# --- devices ---------------------------------------------------------------------------

def nvmlDeviceGetCount():
    _enter("nvmlDeviceGetCount")
    with _state.lock:
        return len(_state.devices)


def nvmlDeviceGetHandleByIndex(index):
    with _state.lock:
        count = len(_state.devices)
    _enter("nvmlDeviceGetHandleByIndex", index)
    if not 0 <= index < count:
        raise NVMLError_InvalidArgument()
    return _Handle(index)


def nvmlDeviceGetIndex(handle):
    return handle.index


def _replayer(call: str, convert=lambda value: value):
    """A device getter answering the recorded value, shaped as the real call returns it."""
    def getter(handle, version=None):
        return convert(_device(call, handle))
    getter.__name__ = getter.__qualname__ = call
    return getter


# Plain values: str, int (mW, mJ, °C...).
for _call in ("nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetPowerUsage",
              "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit",
              "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetFanSpeed",
              "nvmlDeviceGetPerformanceState", "nvmlDeviceGetMultiGpuBoard"):
    globals()[_call] = _replayer(_call)
# Structs and tuples, as the real module builds them.
nvmlDeviceGetMemoryInfo = _replayer("nvmlDeviceGetMemoryInfo", lambda v: c_nvmlMemory_t(**v))
nvmlDeviceGetBAR1MemoryInfo = _replayer("nvmlDeviceGetBAR1MemoryInfo", lambda v: c_nvmlBAR1Memory_t(**v))
nvmlDeviceGetUtilizationRates = _replayer("nvmlDeviceGetUtilizationRates",
                                          lambda v: c_nvmlUtilization_t(**v))
nvmlDeviceGetPciInfo = _replayer("nvmlDeviceGetPciInfo", nvmlFriendlyObject)
nvmlDeviceGetCudaComputeCapability = _replayer("nvmlDeviceGetCudaComputeCapability", tuple)
nvmlDeviceGetMigMode = _replayer("nvmlDeviceGetMigMode", list)
nvmlDeviceGetEncoderUtilization = _replayer("nvmlDeviceGetEncoderUtilization", list)
nvmlDeviceGetDecoderUtilization = _replayer("nvmlDeviceGetDecoderUtilization", list)


def nvmlDeviceGetTemperature(handle, sensor):
    return _device("nvmlDeviceGetTemperature", handle, f"nvmlDeviceGetTemperature({_SENSORS[sensor]})")


def nvmlDeviceGetClockInfo(handle, clock_type):
    return _device("nvmlDeviceGetClockInfo", handle, f"nvmlDeviceGetClockInfo({_CLOCKS[clock_type]})")


def nvmlDeviceGetMaxClockInfo(handle, clock_type):
    return _device("nvmlDeviceGetMaxClockInfo", handle,
                   f"nvmlDeviceGetMaxClockInfo({_CLOCKS[clock_type]})")


def _processes(call: str, handle: _Handle, recorded: str) -> list:
    # Errors are looked up by the versioned call (a driver before 510 has no `_v3`: inject
    # NVMLError_FunctionNotFound there), the answer is the recorded listing of any version.
    _enter(call, handle.index)
    with _state.lock:
        value = _state.devices[handle.index].get(recorded)
    if value is None:
        raise NVMLError_NotSupported()
    # Real NVML gives usedGpuMemory None where the driver cannot tell (Windows WDDM, WSL).
    return [nvmlFriendlyObject({k: v for k, v in proc.items() if not k.startswith("_")})
            for proc in copy.deepcopy(value)]


def _process_calls(kind: str) -> None:
    """`_v2`, `_v3` and the unversioned wrapper, which like nvidia-ml-py's calls `_v3` and turns
    its FunctionNotFound into NVMLLibraryMismatchError (throwOnVersionMismatch)."""
    recorded = f"nvmlDeviceGet{kind}RunningProcesses"
    for version in ("_v2", "_v3"):
        def call(handle, _name=recorded + version):
            return _processes(_name, handle, recorded)
        call.__name__ = call.__qualname__ = recorded + version
        globals()[recorded + version] = call
    v3 = globals()[recorded + "_v3"]

    def unversioned(handle):
        _enter(recorded, handle.index)  # errors, failures and timing recorded for this name
        return v3(handle)
    unversioned.__name__ = unversioned.__qualname__ = recorded
    globals()[recorded] = _real.throwOnVersionMismatch(unversioned)


_process_calls("Compute")
_process_calls("Graphics")


_configure_from_env()
