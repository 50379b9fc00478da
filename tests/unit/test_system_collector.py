"""wordslab_system_info and wordslab_app_version_info from a real VM layout and a fake NVML."""
from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

import pytest

from exporter.collectors.system import SystemCollector
from common.config import Settings
from common.nvml import Nvml
from tests.fakes.fake_nvml import load_fake_pynvml
from tests.fakes.notebooks_env import make_notebooks_env
from tests.support.metrics import promtool_problems, scrape


@pytest.fixture
def os_release(tmp_path):
    path = tmp_path / "os-release"
    path.write_text('NAME="Ubuntu"\nVERSION_ID="24.04"\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\n')
    return path


def this_interpreters_torch():
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def test_system_info_and_versions(vm_env, os_release, tmp_path):
    make_notebooks_env(tmp_path / "home" / "notebooks-env")
    nvml = Nvml(load_fake_pynvml())
    collector = SystemCollector(Settings.from_env(vm_env), os_release=os_release, nvml=nvml)
    result = scrape(collector)

    assert result.series("wordslab_system_info") == [({
        "hosting_platform": "UnknownLinux", "os_version": "Ubuntu 24.04",
        "wordslab_version": "2026-11", "docs_url": "http://127.0.0.1:8888/docs"}, 1.0)]
    versions = {lbl["app"]: lbl["version"] for lbl in result.labels("wordslab_app_version_info")}
    # The recorded H100 driver answered 13000 to nvmlSystemGetCudaDriverVersion_v2.
    assert versions == {"python": "3.12.3", "pytorch": "2.5.1+cu124", "cuda": "13.0"}
    assert result.value("wordslab_collector_success", collector="system") == 1
    assert promtool_problems(result.text) == ""


def test_platform_detected_when_unset(vm_env, os_release, tmp_path):
    kernel = tmp_path / "proc-version"
    kernel.write_text("Linux version 6.6.36.6-microsoft-standard-WSL2\n")
    env = {k: v for k, v in vm_env.items() if k != "WORDSLAB_PLATFORM"}
    collector = SystemCollector(Settings.from_env(env), proc_version=kernel, os_release=os_release,
                                nvml=Nvml(load_fake_pynvml(gpus=0)))
    assert scrape(collector).labels("wordslab_system_info")[0]["hosting_platform"] == "WindowsSubsystemForLinux"


@pytest.mark.parametrize("marker_dir", ["WORDSLAB_WORKSPACE", "WORDSLAB_NOTEBOOKS_ENV"])
def test_cpu_only_marker_hides_cuda(vm_env, os_release, marker_dir):
    make_notebooks_env(Settings.from_env(vm_env).notebooks_env)
    (Path(vm_env[marker_dir]) / ".cpu-only").write_text("")
    fake = load_fake_pynvml()
    collector = SystemCollector(Settings.from_env(vm_env), os_release=os_release, nvml=Nvml(fake))
    apps = [lbl["app"] for lbl in scrape(collector).labels("wordslab_app_version_info")]
    assert "cuda" not in apps and "pytorch" in apps
    assert fake.fake_call_count("nvmlInit") == 0  # a CPU-only VM never touches the driver


def test_no_nvml_library_is_a_normal_state(vm_env, os_release):
    collector = SystemCollector(Settings.from_env(vm_env), os_release=os_release,
                                nvml=Nvml(load_fake_pynvml(no_library=True)))
    result = scrape(collector)
    assert "cuda" not in [lbl["app"] for lbl in result.labels("wordslab_app_version_info")]
    assert result.value("wordslab_collector_success", collector="system") == 1


def test_without_notebooks_env_versions_come_from_this_interpreter(vm_env, os_release):
    env = {k: v for k, v in vm_env.items() if k not in ("WORDSLAB_NOTEBOOKS_ENV", "DASHBOARD_PORT")}
    collector = SystemCollector(Settings.from_env(env), os_release=os_release,
                                nvml=Nvml(load_fake_pynvml(gpus=0)))
    result = scrape(collector)
    versions = {lbl["app"]: lbl["version"] for lbl in result.labels("wordslab_app_version_info")}
    assert versions.get("python") == platform.python_version()
    assert versions.get("pytorch") == this_interpreters_torch()
    assert result.labels("wordslab_system_info")[0]["docs_url"] == ""  # DASHBOARD_PORT unset


def test_docs_link_is_the_front_doors_public_url_on_runpod(vm_env, os_release):
    env = {**vm_env, "RUNPOD_POD_ID": "ebkhet9vq5flt7", "DASHBOARD_PORT": "8888"}
    collector = SystemCollector(Settings.from_env(env), os_release=os_release, nvml=Nvml(load_fake_pynvml(gpus=0)))
    assert scrape(collector).labels("wordslab_system_info")[0]["docs_url"] == \
        "https://ebkhet9vq5flt7-8888.proxy.runpod.net/docs"


def test_conda_env_python_version_from_its_lib_dir(vm_env, os_release, tmp_path):
    conda = tmp_path / "conda-env"
    (conda / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    collector = SystemCollector(Settings.from_env({**vm_env, "WORDSLAB_NOTEBOOKS_ENV": str(conda)}),
                                os_release=os_release, nvml=Nvml(load_fake_pynvml(gpus=0)))
    versions = {lbl["app"]: lbl["version"] for lbl in scrape(collector).labels("wordslab_app_version_info")}
    assert versions["python"] == "3.11"


@pytest.mark.parametrize("line", ["version = 3.11.9", "version_info = 3.11.9", "version_info = 3.11.9.final.0"])
def test_python_version_from_pyvenv_cfg_as_each_tool_writes_it(vm_env, os_release, tmp_path, line):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = false\n{line}\n")
    collector = SystemCollector(Settings.from_env({**vm_env, "WORDSLAB_NOTEBOOKS_ENV": str(venv)}),
                                os_release=os_release, nvml=Nvml(load_fake_pynvml(gpus=0)))
    assert scrape(collector).value("wordslab_app_version_info", app="python", version="3.11.9") == 1
