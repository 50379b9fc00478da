"""MemoryCollector against this machine's /proc/meminfo."""
from __future__ import annotations

from exporter.collectors.memory import MemoryCollector
from common.config import Settings
from tests.support.metrics import promtool_problems, scrape


def meminfo_bytes() -> dict[str, int]:
    fields = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            key, value = line.split(":", 1)
            fields[key] = int(value.split()[0]) * 1024
    return fields


def test_total_and_used_follow_meminfo():
    before = meminfo_bytes()
    result = scrape(MemoryCollector(Settings.from_env({})))
    after = meminfo_bytes()

    assert result.value("wordslab_memory_total_bytes") == before["MemTotal"]
    used = result.value("wordslab_memory_used_bytes")
    candidates = [m["MemTotal"] - m["MemAvailable"] for m in (before, after)]
    assert 0 < used < before["MemTotal"]
    # Memory moves between the reads: used lies within what was seen around the scrape (+ 64 MiB slack).
    assert min(candidates) - 2**26 <= used <= max(candidates) + 2**26
    assert result.value("wordslab_collector_success", collector="memory") == 1
    assert promtool_problems(result.text) == ""
