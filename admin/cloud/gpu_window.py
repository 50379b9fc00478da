"""A VM's GPU utilization over a window, read from its own exporter through Prometheus' HTTP API.

The VM's exporter is scraped under a file_sd target group labelled vm="<name>" (see
admin/cloud/vm_status.sync_targets), so `wordslab_gpu_utilization_ratio{vm="<name>"}[W]`
returns every sample of every GPU of the VM in the last W seconds. The decision uses all of
them (the max), and trusts the window only when EACH GPU's samples cover it with no hole: a busy
GPU whose series stops (its reading fails) while an idle one goes on is "don't know", not idle.
A sample that is not a number (NaN, Inf) is a hole too.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from admin.prometheus_api import PrometheusError, query

METRIC = "wordslab_gpu_utilization_ratio"


@dataclass(frozen=True)
class GpuWindow:
    """Samples (unix time, utilization ratio 0-1) of all the VM's GPUs, sorted by time."""

    start: float
    end: float
    samples: tuple[tuple[float, float], ...]
    # Each GPU's sample times, when known (query_window): every one must cover the window.
    series: tuple[tuple[float, ...], ...] = field(default=())

    @property
    def max_ratio(self) -> float | None:
        return max((v for _, v in self.samples), default=None)

    def last_at_or_above(self, ratio: float) -> float | None:
        """Time of the last sample at or above `ratio` (the last time the VM was in use)."""
        return max((t for t, v in self.samples if v >= ratio), default=None)

    def coverage_gap(self) -> str | None:
        """None when the samples (and each GPU's series) cover [start, end] with no hole wider
        than 3 scrape steps; else why not, in words (no data, starts late, ends early, a hole)."""
        for times in self.series:
            gap = self._gap(sorted(set(times)))
            if gap:
                return gap + " of one GPU"
        return self._gap(sorted({t for t, _ in self.samples}))

    def _gap(self, times: list[float]) -> str | None:
        if len(times) < 2:
            return "no GPU data from its exporter in the window"
        step = statistics.median(b - a for a, b in zip(times, times[1:]))
        tolerance = 3 * step
        if times[0] - self.start > tolerance:
            return f"GPU data only since {times[0] - self.start:.0f} s into the window"
        if self.end - times[-1] > tolerance:
            return f"no GPU data for the last {self.end - times[-1]:.0f} s"
        hole = max(b - a for a, b in zip(times, times[1:]))
        if hole > tolerance:
            return f"a {hole:.0f} s hole in the GPU data"
        return None


def query_window(prometheus_url: str, vm: str, seconds: float, now: float) -> GpuWindow:
    """Raw samples of `vm`'s GPUs over the `seconds` before `now`. Raises PrometheusError."""
    result = query(prometheus_url, f'{METRIC}{{vm="{vm}"}}[{max(1, int(seconds))}s]', now)
    try:
        series = [[(float(t), float(v)) for t, v in s.get("values", [])] for s in result]
    except (AttributeError, TypeError, ValueError):
        raise PrometheusError("Prometheus answered samples that are not [time, value] numbers") from None
    series = [[(t, v) for t, v in s if math.isfinite(v)] for s in series]
    samples = sorted(sample for s in series for sample in s)
    return GpuWindow(now - seconds, now, tuple(samples), tuple(tuple(t for t, _ in s) for s in series))
