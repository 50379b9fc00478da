"""CPU model, cores, time per mode, whole-machine usage between scrapes, load and boot time.

In a container with a CPU quota or a CPU set (Runpod, Vast.ai), cores are what it may use and
usage is its own CPU time over that (exporter/cgroup.py), not the host's.
"""
from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path
from typing import Iterable

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.config import Settings
from exporter.cgroup import cpu_limits
from exporter.collectors.base import PREFIX, WordslabCollector

CPUINFO = Path("/proc/cpuinfo")
# guest time is already counted in user/nice (as node_exporter notes), so it is left out
# of the modes and of the total, like psutil.cpu_percent does.
_GUEST_MODES = ("guest", "guest_nice")
_IDLE_MODES = ("idle", "iowait")
# Keys naming the CPU on x86 first, then on ARM and other architectures.
_MODEL_KEYS = ("model name", "Hardware", "Processor", "cpu model", "cpu")


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """"12th Gen Intel(R) Core(TM) i7-12700H" style name, or the best the kernel offers."""
    found: dict[str, str] = {}
    try:
        with cpuinfo.open(errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if sep and value and key in _MODEL_KEYS and key not in found:
                    found[key] = value
                if "model name" in found:
                    break
    except OSError:
        pass
    for key in _MODEL_KEYS:
        if key in found:
            return found[key]
    return platform.processor() or platform.machine() or "unknown"


def busy_and_total(times) -> tuple[float, float]:
    counted = {m: v for m, v in times._asdict().items() if m not in _GUEST_MODES}
    total = sum(counted.values())
    return total - sum(counted.get(m, 0.0) for m in _IDLE_MODES), total


def usable_cores(logical: int, quota: float | None) -> float:
    """Logical cores, fewer with a CPU affinity (cpuset), fewer still with a quota (may be fractional)."""
    try:
        cores: float = min(logical, len(os.sched_getaffinity(0))) if logical else len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = logical
    return min(cores, quota) if quota else cores


class CpuCollector(WordslabCollector):
    name = "cpu"

    def __init__(self, settings: Settings, *, cpuinfo: Path = CPUINFO):
        super().__init__(settings)
        self.model = cpu_model(cpuinfo)
        self.logical_cores = psutil.cpu_count(logical=True) or os.cpu_count() or 0
        self.boot_time = psutil.boot_time()
        self._lock = threading.Lock()
        # Usage is measured between consecutive scrapes; the first one covers the time since start.
        self._last_busy, self._last_total = busy_and_total(psutil.cpu_times())
        self._last_cgroup: tuple[float, float] | None = None  # (monotonic time, cgroup CPU seconds)
        self._usage = 0.0

    def usage_ratio(self, times, cgroup_seconds: float | None = None, cores: float | None = None) -> float:
        """Busy share since the previous scrape: the machine's from /proc/stat, or with a CPU quota the
        cgroup's CPU time over the cores it may use."""
        busy, total = busy_and_total(times)
        now = time.monotonic()
        with self._lock:
            last_cgroup, self._last_cgroup = self._last_cgroup, (
                (now, cgroup_seconds) if cgroup_seconds is not None and cores else None)
            if last_cgroup is not None and self._last_cgroup is not None and now > last_cgroup[0]:
                used = self._last_cgroup[1] - last_cgroup[1]
                self._usage = min(1.0, max(0.0, used / ((now - last_cgroup[0]) * cores)))
                self._last_busy, self._last_total = busy, total
                return self._usage
            elapsed = total - self._last_total
            if elapsed > 0:  # two scrapes within one clock tick keep the previous value
                self._usage = min(1.0, max(0.0, (busy - self._last_busy) / elapsed))
                self._last_busy, self._last_total = busy, total
            return self._usage

    def collect_metrics(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(PREFIX + "cpu_info", "Always 1: CPU model name from /proc/cpuinfo.",
                                 labels=["model"])
        info.add_metric([self.model], 1)
        yield info
        limits = cpu_limits(self.settings.cgroup_root)
        cores = usable_cores(self.logical_cores, limits.cpu_limit)
        yield GaugeMetricFamily(PREFIX + "cpu_cores", "Logical CPU cores this machine may use: fewer in a "
                                "container with a CPU set, and with a cgroup CPU quota the cores it allows "
                                "(quota / period: cpu.max, v1 cpu.cfs_quota_us), maybe fractional.", value=cores)
        times = psutil.cpu_times()
        seconds = CounterMetricFamily(
            PREFIX + "cpu_seconds", "Seconds all CPUs spent in each mode (guest time is inside user/nice).",
            labels=["mode"])
        for mode, value in times._asdict().items():
            if mode not in _GUEST_MODES:
                seconds.add_metric([mode], value)
        yield seconds
        yield GaugeMetricFamily(
            PREFIX + "cpu_usage_ratio",
            "Share of the whole machine's CPU time that was busy (not idle or iowait) since the previous scrape; "
            "with a cgroup CPU quota, the container's CPU time over the cores it may use.",
            value=self.usage_ratio(times, limits.cpu_usage_seconds if limits.cpu_limit else None, cores))
        for minutes, value in zip((1, 5, 15), os.getloadavg()):
            yield GaugeMetricFamily(PREFIX + f"load{minutes}",
                                    f"{minutes}-minute load average.", value=value)
        yield GaugeMetricFamily(PREFIX + "boot_time_seconds", "Unix time the machine booted.",
                                value=self.boot_time)
