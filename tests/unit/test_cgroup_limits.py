"""Containers as cloud GPU boxes have them (issue 9 C): memory and CPU from the cgroup.

cgroup trees laid out as the kernel shows them (v2 unified, v1 per controller) in a temporary
directory that the `cgroup_root` setting points to; the real exporter process is run on one too.
"""
from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from common.config import Settings
from exporter.cgroup import cpu_limits, memory_limits, own_paths
from exporter.collectors.cpu import CpuCollector
from exporter.collectors.memory import MemoryCollector
from tests.support.metrics import exporter_metrics_containing, scrape

GIB = 1024 ** 3


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    return root


def v2_tree(root: Path, *, memory_max="4294967296", current="1073741824", cpu_max="200000 100000",
            usage_usec="5000000") -> Path:
    return write(root, {"cgroup.controllers": "cpuset cpu io memory pids", "memory.max": memory_max,
                        "memory.current": current, "cpu.max": cpu_max,
                        "cpu.stat": f"usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 1"})


def v1_tree(root: Path, *, limit=str(4 * GIB), usage=str(GIB), quota="150000", period="100000") -> Path:
    return write(root, {"memory/memory.limit_in_bytes": limit, "memory/memory.usage_in_bytes": usage,
                        "cpu,cpuacct/cpu.cfs_quota_us": quota, "cpu,cpuacct/cpu.cfs_period_us": period,
                        "cpu,cpuacct/cpuacct.usage": "7000000000"})


def settings(root: Path) -> Settings:
    return Settings.from_env({"WORDSLAB_DASHBOARD_CGROUP_ROOT": str(root)})


@pytest.mark.parametrize("tree", [v2_tree, v1_tree], ids=["v2", "v1"])
def test_memory_in_a_4_gib_cgroup_is_the_cgroups(tmp_path, tree):
    result = scrape(MemoryCollector(settings(tree(tmp_path / "cgroup"))))
    assert result.value("wordslab_memory_total_bytes") == 4294967296
    assert result.value("wordslab_memory_used_bytes") == 1073741824


@pytest.mark.parametrize("tree, kwargs", [(v2_tree, {"memory_max": "max"}),
                                          (v1_tree, {"limit": "9223372036854771712"}),
                                          (v2_tree, {"memory_max": str(2 ** 50)})],  # above the machine
                         ids=["v2-max", "v1-unlimited", "above-ram"])
def test_no_memory_limit_keeps_the_machines_figures(tmp_path, tree, kwargs):
    result = scrape(MemoryCollector(settings(tree(tmp_path / "cgroup", **kwargs))))
    assert result.value("wordslab_memory_total_bytes") == psutil.virtual_memory().total


def test_missing_cgroup_tree_is_the_machine_not_an_error(tmp_path):
    result = scrape(MemoryCollector(settings(tmp_path / "nothing-here")))
    assert result.value("wordslab_memory_total_bytes") == psutil.virtual_memory().total
    assert result.value("wordslab_collector_success", collector="memory") == 1


def test_nested_cgroup_takes_the_lowest_limit_up_to_the_root(tmp_path):
    cgroup = tmp_path / "proc-self-cgroup"
    cgroup.write_text("0::/user.slice/app.scope\n")
    root = v2_tree(tmp_path / "cgroup", memory_max=str(8 * GIB), cpu_max="max 100000")
    write(root / "user.slice", {"memory.max": str(2 * GIB), "cpu.max": "50000 100000"})
    write(root / "user.slice" / "app.scope", {"memory.max": "max", "memory.current": "12345"})
    memory, cpu = memory_limits(root, cgroup), cpu_limits(root, cgroup)
    assert (memory.memory_limit_bytes, memory.memory_usage_bytes, cpu.cpu_limit) == (2 * GIB, 12345, 0.5)
    assert own_paths(cgroup) == {"": "/user.slice/app.scope"}


@pytest.mark.parametrize("tree, cores", [(v2_tree, 2.0), (v1_tree, 1.5)], ids=["v2", "v1"])
def test_cpu_quota_gives_the_effective_cores(tmp_path, tree, cores):
    result = scrape(CpuCollector(settings(tree(tmp_path / "cgroup"))))
    assert result.value("wordslab_cpu_cores") == min(cores, len(os.sched_getaffinity(0)))


def test_no_cpu_quota_is_every_core_we_may_run_on(tmp_path):
    result = scrape(CpuCollector(settings(v2_tree(tmp_path / "cgroup", cpu_max="max 100000"))))
    assert result.value("wordslab_cpu_cores") == len(os.sched_getaffinity(0))


def test_cpu_usage_with_a_quota_is_the_containers_own(tmp_path):
    root = v2_tree(tmp_path / "cgroup", cpu_max="100000 100000", usage_usec="1000000")
    collector = CpuCollector(settings(root))
    scrape(collector)  # first reading of the cgroup's CPU time
    write(root, {"cpu.stat": "usage_usec 1000000"})  # no CPU time used since: idle container
    assert scrape(collector).value("wordslab_cpu_usage_ratio") == 0.0
    write(root, {"cpu.stat": f"usage_usec {10 ** 15}"})  # far more than one core could: saturated
    assert scrape(collector).value("wordslab_cpu_usage_ratio") == 1.0


def test_exporter_process_reports_the_cgroups_memory(tmp_path, vm_env):
    root = v2_tree(tmp_path / "cgroup")
    env = {**vm_env, "WORDSLAB_DASHBOARD_CGROUP_ROOT": str(root)}
    text = exporter_metrics_containing(env, tmp_path, "wordslab_memory_total_bytes 4.294967296e+09")
    assert "wordslab_memory_total_bytes 4.294967296e+09" in text
    assert "wordslab_memory_used_bytes 1.073741824e+09" in text


def test_cgroup_root_from_flag_and_environment():
    from exporter.cli import parse_args, settings_from_args
    assert settings_from_args(parse_args([]), env={}).cgroup_root == Path("/sys/fs/cgroup")
    assert settings_from_args(parse_args([]), env={"WORDSLAB_DASHBOARD_CGROUP_ROOT": "/e"}).cgroup_root == Path("/e")
    assert settings_from_args(parse_args(["--cgroup-root", "/f"]), env={}).cgroup_root == Path("/f")
