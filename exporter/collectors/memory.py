"""Machine memory: total and used (total - available, as `free` shows it), or a container's own.

Inside a memory cgroup lower than the machine (Runpod, Vast.ai containers), total is the
cgroup's limit and used its own usage (exporter/cgroup.py), as the container can use no more.
"""
from __future__ import annotations

from typing import Iterable

import psutil
from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.cgroup import memory_limits
from exporter.collectors.base import PREFIX, WordslabCollector


def memory_figures(cgroup_root) -> tuple[int, int]:
    """(total, used) in bytes: the machine's, or its cgroup's when that limit is lower."""
    memory = psutil.virtual_memory()
    total, used = memory.total, memory.total - memory.available
    limits = memory_limits(cgroup_root)
    if limits.memory_limit_bytes is not None and limits.memory_limit_bytes < total:
        total = limits.memory_limit_bytes
        used = limits.memory_usage_bytes if limits.memory_usage_bytes is not None else min(used, total)
    return total, used


class MemoryCollector(WordslabCollector):
    name = "memory"

    def collect_metrics(self) -> Iterable[Metric]:
        total, used = memory_figures(self.settings.cgroup_root)
        yield GaugeMetricFamily(PREFIX + "memory_total_bytes", "Total physical memory, or the memory limit "
                                "of the container's cgroup when lower (cgroup v2 memory.max, v1 "
                                "memory.limit_in_bytes).", value=total)
        yield GaugeMetricFamily(PREFIX + "memory_used_bytes",
                                "Memory in use: total minus available (page cache that can be freed is not used); "
                                "in a memory-limited container, the cgroup's own usage (memory.current, v1 "
                                "memory.usage_in_bytes).",
                                value=used)
