"""Base class for collectors and the helpers that time them and isolate their failures.

Every collector yields prometheus_client metric families built fresh per scrape,
so a vanished disk or GPU process disappears from the output. `run_collector` swallows a
collector's failure and `self_metrics` adds `wordslab_collector_success` and
`wordslab_collector_duration_seconds` for each one, so one broken source never breaks a scrape.
"""
from __future__ import annotations

import logging
import time
from typing import Iterable, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

from common.background import BackgroundSource, SourceGroup
from common.config import Settings
from common.log_changes import ChangeLog
from common.watch import WATCH_MODES

log = logging.getLogger(__name__)
# A collector failing at every scrape logs it once, and again when it changes or recovers.
_failures = ChangeLog(log)

PREFIX = "wordslab_"


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    """An empty gauge family `wordslab_<name>` with these label names; fill it with add_metric()."""
    return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))


class PartialCollection(Exception):
    """Raised by a collector that still has metrics to publish after some reads failed.

    The exposition publishes `families` and reports the collector's success as 0, so a
    failing GPU or disk shows as a metric without hiding the healthy ones.
    """

    def __init__(self, families: Iterable[Metric], errors: Sequence[str]):
        super().__init__("; ".join(errors))
        self.families = list(families)
        self.errors = list(errors)


class WordslabCollector(SourceGroup):
    """A named source of metric families. Subclasses implement `collect_metrics`."""

    name: str = ""
    # True when collect_metrics() depends only on self.sources' snapshot values: its text is then
    # rendered when a source's value changes, off the scrape path (see exporter/exposition.py), and
    # kept until the next change. Such a collector never reads the clock: a value that moves with
    # time (a countdown, an age) is worked out in the source's refresh, so a change shows.
    output_from_sources_only: bool = False

    def __init__(self, settings: Settings):
        self.settings = settings
        # Background sources this collector reads; their health is published too.
        self.sources: list[BackgroundSource] = []

    def collect_metrics(self) -> Iterable[Metric]:  # pragma: no cover - interface
        raise NotImplementedError


def run_collector(collector: WordslabCollector) -> tuple[list[Metric], bool, float]:
    """The collector's families, whether it succeeded, and how long it took; never raises."""
    started = time.perf_counter()
    try:
        families, ok = list(collector.collect_metrics()), True
    except PartialCollection as partial:
        _failures.report(collector.name, f"partial: {partial}", "collector %s partly failed: %s "
                         "(not logged again until it changes)", collector.name, partial)
        families, ok = partial.families, False
    except Exception as exc:  # one broken source must not break the scrape
        if _failures.changed(collector.name, f"failed: {type(exc).__name__}"):
            log.exception("collector %s failed (not logged again until it changes)", collector.name)
        families, ok = [], False
    else:
        _failures.report(collector.name, None, recovered=f"collector {collector.name} collects again")
    return families, ok, time.perf_counter() - started


def self_metrics(outcomes: Iterable[tuple[str, bool, float]]) -> Iterable[Metric]:
    """Each collector's success and duration (the sources' health is `source_health`)."""
    success = GaugeMetricFamily(
        PREFIX + "collector_success",
        "1 if the collector's last collection succeeded, 0 if it failed.",
        labels=["collector"],
    )
    duration = GaugeMetricFamily(
        PREFIX + "collector_duration_seconds",
        "Time the collector's last collection took: during this scrape, or for collectors "
        "rendered when their background sources refresh, during that render.",
        labels=["collector"],
    )
    for name, ok, seconds in outcomes:
        success.add_metric([name], 1.0 if ok else 0.0)
        duration.add_metric([name], seconds)
    yield success
    yield duration


def unique_sources(collectors: Sequence[WordslabCollector]) -> list[BackgroundSource]:
    """The collectors' sources, each once: a source several collectors read (the config DB)."""
    return list({id(s): s for c in collectors for s in c.sources}.values())


def add_state_set(family: GaugeMetricFamily, labels: Sequence[str], states: Iterable[str], current: str) -> None:
    """One sample per possible state (the last label), 1 for `current` and 0 for the others, so a
    query can select `{status="error"} == 1` and a change of state is a change of value."""
    for state in states:
        family.add_metric([*labels, state], 1.0 if state == current else 0.0)


def source_health(sources: Iterable[BackgroundSource]) -> Iterable[Metric]:
    ok = GaugeMetricFamily(PREFIX + "source_refresh_success",
                           "1 if the background source's last refresh succeeded.", labels=["source"])
    last = GaugeMetricFamily(PREFIX + "source_last_success_timestamp_seconds",
                             "Unix time of the source's last successful refresh.", labels=["source"])
    took = GaugeMetricFamily(PREFIX + "source_refresh_duration_seconds",
                             "Time the source's last refresh took.", labels=["source"])
    watch = GaugeMetricFamily(PREFIX + "source_watch_mode",
                              "How a source learns of file changes, as a state set: inotify (file events, "
                              "fresh within seconds) or polling (the kernel's watches ran out, or none "
                              "possible: periodic re-reads only).", labels=["source", "mode"])
    for source in sources:
        if source.watch_mode is not None:
            add_state_set(watch, [source.name], WATCH_MODES, source.watch_mode())
        snap = source.snapshot()
        ok.add_metric([source.name], 1.0 if snap.ok else 0.0)
        took.add_metric([source.name], snap.duration_seconds)
        if snap.refreshed_at is not None:
            last.add_metric([source.name], snap.refreshed_at)
    yield from (ok, last, took, watch)
