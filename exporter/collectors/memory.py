"""Machine memory: total and used (total - available, as `free` shows it)."""
from __future__ import annotations

from typing import Iterable

import psutil
from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.collectors.base import PREFIX, WordslabCollector


class MemoryCollector(WordslabCollector):
    name = "memory"

    def collect_metrics(self) -> Iterable[Metric]:
        memory = psutil.virtual_memory()
        yield GaugeMetricFamily(PREFIX + "memory_total_bytes", "Total physical memory.",
                                value=memory.total)
        yield GaugeMetricFamily(PREFIX + "memory_used_bytes",
                                "Memory in use: total minus available (page cache that can be freed is not used).",
                                value=memory.total - memory.available)
