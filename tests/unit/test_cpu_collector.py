"""CpuCollector against this machine's real /proc, plus recorded cpuinfo files."""
from __future__ import annotations

import os
import platform

import psutil

from exporter.collectors.cpu import CpuCollector, cpu_model
from common.config import Settings
from tests.support.metrics import promtool_problems, scrape

INTEL_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 154
model name\t: 12th Gen Intel(R) Core(TM) i7-12700H
stepping\t: 3

processor\t: 1
model name\t: 12th Gen Intel(R) Core(TM) i7-12700H
"""
RISCV_CPUINFO = "processor\t: 0\nhart\t\t: 0\nisa\t\t: rv64imafdc\nmmu\t\t: sv39\n"


def test_cpu_metrics_are_this_machines(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(INTEL_CPUINFO)
    collector = CpuCollector(Settings.from_env({}), cpuinfo=cpuinfo)
    before_times, before_load = psutil.cpu_times(), os.getloadavg()
    result = scrape(collector)
    after_times, after_load = psutil.cpu_times(), os.getloadavg()

    assert result.labels("wordslab_cpu_info") == [{"model": "12th Gen Intel(R) Core(TM) i7-12700H"}]
    assert result.value("wordslab_cpu_cores") == os.cpu_count()
    assert result.value("wordslab_boot_time_seconds") == psutil.boot_time()
    modes = {lbl["mode"]: v for lbl, v in result.series("wordslab_cpu_seconds_total")}
    assert {"user", "system", "idle", "iowait"} <= set(modes)
    assert "guest" not in modes  # already inside user
    for mode, seconds in modes.items():
        assert getattr(before_times, mode) <= seconds <= getattr(after_times, mode)
    for i, minutes in enumerate((1, 5, 15)):
        assert result.value(f"wordslab_load{minutes}") in (before_load[i], after_load[i])
    assert 0.0 <= result.value("wordslab_cpu_usage_ratio") <= 1.0
    assert result.value("wordslab_collector_success", collector="cpu") == 1
    assert promtool_problems(result.text) == ""


def test_usage_ratio_covers_the_time_since_the_previous_scrape():
    collector = CpuCollector(Settings.from_env({}))
    scrape(collector)
    # Keep one core busy until the machine has logged a quarter second of busy time.
    start = psutil.cpu_times()
    while (psutil.cpu_times().user + psutil.cpu_times().system) - (start.user + start.system) < 0.25:
        sum(i * i for i in range(10_000))
    busy = scrape(collector).value("wordslab_cpu_usage_ratio")
    assert 0.0 < busy <= 1.0


def test_model_name_of_this_machine_and_fallbacks(tmp_path):
    with open("/proc/cpuinfo") as fh:
        names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
    if names:
        assert cpu_model() == names[0]
    riscv = tmp_path / "riscv"
    riscv.write_text(RISCV_CPUINFO)
    assert cpu_model(riscv) == (platform.processor() or platform.machine() or "unknown")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 48.00\n\nHardware\t: BCM2835\n")
    assert cpu_model(arm) == "BCM2835"
    assert cpu_model(tmp_path / "absent") == (platform.processor() or platform.machine() or "unknown")
