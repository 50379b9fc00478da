"""The GPU collector against the fake pynvml replaying a real H100 under load, and real NVML."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors.gpu import GpuCollector
from common.config import Settings
from common.nvml import Nvml
from tests.fakes.fake_nvml import FAKE_NVML_DIR, load_fake_pynvml
from tests.support.env import free_port
from tests.support.metrics import Scrape, promtool_problems, scrape

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "nvml" / "h100-under-load.json"
# Above Linux's largest pid_max (2**22), so no process can have it.
ABSENT_PID = 2**22 + 17
H100_UUID = "GPU-eeb5d346-0bfa-5481-4430-5b7341f35afa"


def by_gpu(scraped: Scrape, name: str) -> dict[str, float]:
    return {labels["gpu"]: value for labels, value in scraped.series(name)}


def success(scraped: Scrape) -> float:
    return scraped.value("wordslab_collector_success", collector="gpu")


def collector_for(vm_env, **scenario) -> tuple[GpuCollector, object]:
    fake = load_fake_pynvml(**scenario)
    return GpuCollector(Settings.from_env(vm_env), nvml=Nvml(fake)), fake


def absent_process() -> dict:
    """The recorded python3 process, under a pid this machine cannot have."""
    return {"pid": ABSENT_PID, "usedGpuMemory": 7589593088, "gpuInstanceId": 4294967295,
            "computeInstanceId": 4294967295, "_process_name": "python3"}


def test_replays_the_recorded_h100(vm_env):
    collector, _ = collector_for(vm_env, processes={0: [absent_process()]})
    got = scrape(collector)

    assert got.value("wordslab_gpus") == 1
    assert got.value("wordslab_gpu_nvml_available") == 1
    assert got.series("wordslab_gpu_info") == [(
        {"gpu": "0", "uuid": H100_UUID, "name": "NVIDIA H100 80GB HBM3", "driver_version": "580.159.04"},
        1.0)]
    assert by_gpu(got, "wordslab_gpu_memory_used_bytes") == {"0": 8102150144}
    assert by_gpu(got, "wordslab_gpu_memory_total_bytes") == {"0": 85520809984}
    assert by_gpu(got, "wordslab_gpu_utilization_ratio") == {"0": 0.98}
    assert by_gpu(got, "wordslab_gpu_temperature_celsius") == {"0": 58}
    assert by_gpu(got, "wordslab_gpu_power_watts") == {"0": 687.023}
    assert by_gpu(got, "wordslab_gpu_power_limit_watts") == {"0": 700}
    flops = {labels["precision"]: v for labels, v in got.series("wordslab_gpu_theoretical_flops")}
    assert flops == {"fp32": 67e12, "tf32": 494.5e12, "fp16": 989.5e12, "bf16": 989.5e12,
                     "fp8": 1979e12, "int8": 1979e12}
    # The pid is not in our namespace (as from inside a container): NVML's name, user unknown.
    assert got.series("wordslab_gpu_process_memory_bytes") == [
        ({"gpu": "0", "pid": str(ABSENT_PID), "process": "python3", "user": "unknown"}, 7589593088)]
    assert success(got) == 1


def test_several_gpus_each_get_their_series(vm_env):
    collector, _ = collector_for(vm_env, gpus=3)
    got = scrape(collector)

    assert got.value("wordslab_gpus") == 3
    uuids = {labels["gpu"]: labels["uuid"] for labels in got.labels("wordslab_gpu_info")}
    assert set(uuids) == {"0", "1", "2"} and len(set(uuids.values())) == 3
    assert uuids["0"] == H100_UUID
    for name in ("wordslab_gpu_memory_used_bytes", "wordslab_gpu_utilization_ratio",
                 "wordslab_gpu_temperature_celsius", "wordslab_gpu_power_watts",
                 "wordslab_gpu_power_limit_watts"):
        assert set(by_gpu(got, name)) == {"0", "1", "2"}, name
    assert len(got.series("wordslab_gpu_theoretical_flops")) == 3 * 6
    assert success(got) == 1


def test_no_nvml_library_is_a_normal_state(vm_env):
    collector, _ = collector_for(vm_env, no_library=True)
    got = scrape(collector)

    assert got.value("wordslab_gpus") == 0
    assert got.value("wordslab_gpu_nvml_available") == 0
    assert got.series("wordslab_gpu_info") == []
    assert success(got) == 1


def test_driver_without_gpus(vm_env):
    collector, _ = collector_for(vm_env, gpus=0)
    got = scrape(collector)

    assert got.value("wordslab_gpus") == 0
    assert got.value("wordslab_gpu_nvml_available") == 1
    assert got.series("wordslab_gpu_memory_used_bytes") == []
    assert success(got) == 1


@pytest.mark.parametrize("marker_dir", ["WORDSLAB_NOTEBOOKS_ENV", "WORDSLAB_WORKSPACE"])
def test_cpu_only_marker_hides_the_gpus(vm_env, marker_dir):
    Path(vm_env[marker_dir]).mkdir(parents=True, exist_ok=True)
    (Path(vm_env[marker_dir]) / ".cpu-only").touch()
    collector, fake = collector_for(vm_env, gpus=2)
    got = scrape(collector)

    assert got.value("wordslab_gpus") == 0
    assert got.series("wordslab_gpu_info") == []
    assert fake.fake_call_count("nvmlDeviceGetHandleByIndex") == 0
    assert success(got) == 1


def test_error_mid_scrape_keeps_the_other_gpus_and_fails_the_collector(vm_env):
    # GPU 0 answers, then utilization fails on GPU 1 (fell off the bus mid-scrape).
    collector, _ = collector_for(vm_env, gpus=2, fail="nvmlDeviceGetUtilizationRates:1:NVMLError_GpuIsLost")
    got = scrape(collector)

    assert by_gpu(got, "wordslab_gpu_utilization_ratio") == {"0": 0.98}
    assert by_gpu(got, "wordslab_gpu_memory_used_bytes") == {"0": 8102150144, "1": 8102150144}
    assert by_gpu(got, "wordslab_gpu_power_watts") == {"0": 687.023, "1": 687.023}
    assert got.value("wordslab_gpus") == 2
    assert success(got) == 0


def test_gpu_whose_handle_fails_is_left_out(vm_env):
    collector, _ = collector_for(vm_env, gpus=3, fail="nvmlDeviceGetHandleByIndex:1:NVMLError_Unknown")
    got = scrape(collector)

    assert set(by_gpu(got, "wordslab_gpu_info")) == {"0"}
    assert got.value("wordslab_gpus") == 1
    assert got.value("wordslab_gpu_nvml_available") == 1
    assert success(got) == 0


def test_not_supported_fields_are_omitted_without_failing(vm_env):
    collector, _ = collector_for(vm_env, gpus=2, errors={
        "nvmlDeviceGetPowerUsage[1]": "NVMLError_NotSupported",
        "nvmlDeviceGetTemperature(GPU)": "NVMLError_NotSupported: Not Supported (value=3)"})
    got = scrape(collector)

    assert by_gpu(got, "wordslab_gpu_power_watts") == {"0": 687.023}
    assert by_gpu(got, "wordslab_gpu_temperature_celsius") == {}
    assert by_gpu(got, "wordslab_gpu_power_limit_watts") == {"0": 700, "1": 700}
    assert success(got) == 1


def test_fake_raises_the_real_modules_errors_recorded_in_the_fixture():
    import pynvml as real  # nvidia-ml-py itself

    fake = load_fake_pynvml(gpus=2)
    fake.nvmlInit()
    for index in range(2):  # the recording's fan NotSupported holds for every clone
        with pytest.raises(real.NVMLError_NotSupported) as raised:
            fake.nvmlDeviceGetFanSpeed(fake.nvmlDeviceGetHandleByIndex(index))
        assert raised.value.value == real.NVML_ERROR_NOT_SUPPORTED
    with pytest.raises(real.NVMLError_LibraryNotFound):
        load_fake_pynvml(no_library=True).nvmlInit()
    with pytest.raises(real.NVMLError_Uninitialized):
        load_fake_pynvml().nvmlDeviceGetCount()


def test_vanished_process_disappears_at_the_next_scrape(vm_env):
    me = {"pid": os.getpid(), "usedGpuMemory": 1 << 30, "gpuInstanceId": 4294967295,
          "computeInstanceId": 4294967295}
    collector, fake = collector_for(vm_env, processes={0: [me, absent_process()]})
    first = scrape(collector).series("wordslab_gpu_process_memory_bytes")

    own = psutil.Process()
    assert sorted(first, key=lambda s: s[1]) == [
        ({"gpu": "0", "pid": str(os.getpid()), "process": own.name(), "user": own.username()}, 1 << 30),
        ({"gpu": "0", "pid": str(ABSENT_PID), "process": "python3", "user": "unknown"}, 7589593088)]

    fake.fake_set_processes(0, [me])
    second = scrape(collector).labels("wordslab_gpu_process_memory_bytes")
    assert [labels["pid"] for labels in second] == [str(os.getpid())]


def test_process_listed_twice_counts_once_and_unknown_memory_is_omitted(vm_env):
    unknown_memory = dict(absent_process(), pid=ABSENT_PID + 1, usedGpuMemory=None)
    collector, fake = collector_for(vm_env, processes={0: [absent_process(), unknown_memory]})
    fake.fake_set_processes(0, [absent_process()], kind="Graphics")
    got = scrape(collector)

    assert [v for _, v in got.series("wordslab_gpu_process_memory_bytes")] == [7589593088]
    assert success(got) == 1


def test_unknown_model_has_no_flops_but_everything_else(vm_env, tmp_path):
    data = json.loads(FIXTURE.read_text())
    data["calls"]["devices"][0]["nvmlDeviceGetName"] = "NVIDIA Imaginary X1"
    fixture = tmp_path / "imaginary.json"
    fixture.write_text(json.dumps(data))
    collector, _ = collector_for(vm_env, fixture=fixture)
    got = scrape(collector)

    assert got.series("wordslab_gpu_theoretical_flops") == []
    assert [labels["name"] for labels in got.labels("wordslab_gpu_info")] == ["NVIDIA Imaginary X1"]
    assert by_gpu(got, "wordslab_gpu_power_watts") == {"0": 687.023}


@pytest.mark.parametrize("scenario", [
    {"gpus": 2},
    {"gpus": 2, "fail": "nvmlDeviceGetPowerUsage:1:NVMLError_Timeout"},
    {"no_library": True},
])
def test_exposition_passes_promtool(vm_env, scenario):
    collector, _ = collector_for(vm_env, **scenario)
    assert promtool_problems(scrape(collector).text) == ""


def test_real_nvml_on_this_machine(vm_env):
    """With the real nvidia-ml-py: no GPU here means LibraryNotFound, 0 GPUs, success 1."""
    import pynvml as real

    try:
        real.nvmlInit()
    except real.NVMLError_LibraryNotFound:
        available, gpus = 0, 0  # this build machine: no libnvidia-ml.so.1
    else:  # a machine with a driver: the collector must count what NVML counts
        available, gpus = 1, real.nvmlDeviceGetCount()
    got = scrape(GpuCollector(Settings.from_env(vm_env), nvml=Nvml(real)))

    assert got.value("wordslab_gpu_nvml_available") == available
    assert got.value("wordslab_gpus") == gpus
    assert len(got.series("wordslab_gpu_info")) == gpus
    assert success(got) == 1


def test_exporter_process_serves_gpu_series_from_the_fake(vm_env):
    port = free_port()
    env = dict(vm_env, PYTHONPATH=os.pathsep.join([str(FAKE_NVML_DIR), str(REPO)]),
               FAKE_NVML_FIXTURE=str(FIXTURE), FAKE_NVML_GPUS="2")
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "--listen-address", f"127.0.0.1:{port}"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        text = _wait_for_metrics(proc, f"http://127.0.0.1:{port}/metrics")
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert text is not None, f"exporter never served /metrics:\n{output}"
    got = Scrape(text, [s for f in text_string_to_metric_families(text) for s in f.samples])
    assert got.value("wordslab_gpus") == 2
    assert by_gpu(got, "wordslab_gpu_memory_used_bytes") == {"0": 8102150144, "1": 8102150144}
    assert by_gpu(got, "wordslab_gpu_power_watts") == {"0": 687.023, "1": 687.023}
    assert len(got.series("wordslab_gpu_process_memory_bytes")) == 2
    assert success(got) == 1


def _wait_for_metrics(proc: subprocess.Popen, url: str) -> str | None:
    deadline = time.monotonic() + 60  # start-up on a loaded CI machine, not a speed check
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.read().decode()
        except OSError:
            time.sleep(0.1)
    return None


# Drivers before 510 have no nvmlDeviceGet*RunningProcesses_v3: nvidia-ml-py's unversioned call
# then raises NVMLLibraryMismatchError, and the `_v2` call is the one the driver answers.
BEFORE_510 = {"nvmlDeviceGetComputeRunningProcesses_v3": "NVMLError_FunctionNotFound",
              "nvmlDeviceGetGraphicsRunningProcesses_v3": "NVMLError_FunctionNotFound"}


def test_driver_before_510_lists_processes_through_the_v2_call(vm_env):
    collector, fake = collector_for(vm_env, errors=BEFORE_510, processes={0: [absent_process()]})
    got = scrape(collector)
    assert success(got) == 1
    assert got.series("wordslab_gpu_process_memory_bytes") == [
        ({"gpu": "0", "pid": str(ABSENT_PID), "process": "python3", "user": "unknown"}, 7589593088)]
    assert fake.fake_call_count("nvmlDeviceGetComputeRunningProcesses_v2") == 1
    assert by_gpu(got, "wordslab_gpu_memory_used_bytes") == {"0": 8102150144}


def test_driver_without_any_process_listing_still_succeeds(vm_env):
    errors = {**BEFORE_510, "nvmlDeviceGetComputeRunningProcesses_v2": "NVMLError_FunctionNotFound",
              "nvmlDeviceGetGraphicsRunningProcesses_v2": "NVMLError_FunctionNotFound"}
    collector, _ = collector_for(vm_env, errors=errors, processes={0: [absent_process()]})
    for _ in range(2):  # every scrape, not only the first
        got = scrape(collector)
        assert success(got) == 1
        assert got.series("wordslab_gpu_process_memory_bytes") == []
        assert by_gpu(got, "wordslab_gpu_power_watts") == {"0": 687.023}


@pytest.mark.parametrize("call", ["nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit",
                                  "nvmlDeviceGetTemperature(GPU)", "nvmlDeviceGetUtilizationRates",
                                  "nvmlDeviceGetMemoryInfo"])
def test_optional_calls_missing_from_the_driver_do_not_fail_the_collector(vm_env, call):
    collector, _ = collector_for(vm_env, errors={call: "NVMLError_FunctionNotFound"})
    got = scrape(collector)
    assert success(got) == 1
    assert got.value("wordslab_gpus") == 1
    assert got.value("wordslab_gpu_info", gpu="0") == 1


def test_a_real_failure_of_the_process_listing_still_fails_the_collector(vm_env):
    collector, _ = collector_for(vm_env, errors={"nvmlDeviceGetComputeRunningProcesses_v3": "NVMLError_GpuIsLost"})
    got = scrape(collector)
    assert success(got) == 0
    assert by_gpu(got, "wordslab_gpu_power_watts") == {"0": 687.023}


def test_endpoint_gpu_memory_reads_old_drivers_too(vm_env):
    from common.sources.endpoint_probe import gpu_memory_of
    fake = load_fake_pynvml(errors=BEFORE_510, processes={0: [absent_process()]})
    assert gpu_memory_of(Nvml(fake), {ABSENT_PID}) == 7589593088.0


def test_process_name_that_is_not_utf8_is_shown_escaped_and_hides_nothing(vm_env):
    """A process outside our pid namespace whose executable path is Latin-1 (b"caf\\xe9"):
    nvidia-ml-py decodes NVML's answer strictly and raises UnicodeDecodeError. Before, that
    escaped the collector and every GPU series was gone; now the name is shown escaped."""
    latin1 = dict(absent_process(), _process_name=os.fsdecode(b"/opt/caf\xe9/caf\xe9-serve"))
    other = dict(absent_process(), pid=ABSENT_PID + 1, usedGpuMemory=1 << 20)
    collector, _ = collector_for(vm_env, processes={0: [latin1, other]})
    got = scrape(collector)
    assert success(got) == 1
    assert promtool_problems(got.text) == ""
    assert by_gpu(got, "wordslab_gpu_memory_total_bytes") == {"0": 85520809984.0}
    processes = {labels["pid"]: labels["process"] for labels, _ in got.series("wordslab_gpu_process_memory_bytes")}
    assert processes == {str(ABSENT_PID): "caf\\xe9-serve", str(ABSENT_PID + 1): "python3"}


def test_mig_gpu_without_privileges_to_list_processes_still_succeeds(vm_env):
    """In MIG mode the aggregate process listing needs privileges (NVML's own docs): a container
    gets NoPermission at every scrape. That is a lasting limit, not a failing GPU: before, the
    collector reported failure forever and its alert never stopped."""
    errors = {"nvmlDeviceGetComputeRunningProcesses_v3": "NVMLError_NoPermission",
              "nvmlDeviceGetGraphicsRunningProcesses_v3": "NVMLError_NoPermission"}
    collector, _ = collector_for(vm_env, errors=errors, processes={0: [absent_process()]})
    for _ in range(2):
        got = scrape(collector)
        assert success(got) == 1
        assert got.series("wordslab_gpu_process_memory_bytes") == []
        assert by_gpu(got, "wordslab_gpu_memory_total_bytes") == {"0": 85520809984.0}
