"""CPU model, cores, time per mode, whole-machine usage between scrapes, load and boot time."""
from __future__ import annotations

import os
import platform
import threading
from pathlib import Path
from typing import Iterable

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.config import Settings
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


class CpuCollector(WordslabCollector):
    name = "cpu"

    def __init__(self, settings: Settings, *, cpuinfo: Path = CPUINFO):
        super().__init__(settings)
        self.model = cpu_model(cpuinfo)
        self.cores = psutil.cpu_count(logical=True) or os.cpu_count() or 0
        self.boot_time = psutil.boot_time()
        self._lock = threading.Lock()
        # Usage is measured between consecutive scrapes; the first one covers the time since start.
        self._last_busy, self._last_total = busy_and_total(psutil.cpu_times())
        self._usage = 0.0

    def usage_ratio(self, times) -> float:
        busy, total = busy_and_total(times)
        with self._lock:
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
        yield GaugeMetricFamily(PREFIX + "cpu_cores", "Number of logical CPU cores.", value=self.cores)
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
            "Share of the whole machine's CPU time that was busy (not idle or iowait) since the previous scrape.",
            value=self.usage_ratio(times))
        for minutes, value in zip((1, 5, 15), os.getloadavg()):
            yield GaugeMetricFamily(PREFIX + f"load{minutes}",
                                    f"{minutes}-minute load average.", value=value)
        yield GaugeMetricFamily(PREFIX + "boot_time_seconds", "Unix time the machine booted.",
                                value=self.boot_time)
