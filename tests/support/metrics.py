"""Scrape collectors through the real registry and exposition format, and lint the text with promtool."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from exporter.exposition import Exposition


@dataclass
class Scrape:
    text: str
    samples: list  # prometheus_client Sample tuples, in exposition order

    def series(self, name: str) -> list[tuple[dict, float]]:
        return [(s.labels, s.value) for s in self.samples if s.name == name]

    def value(self, name: str, **labels) -> float | None:
        """The value of the one sample whose labels include `labels`, None if there is none."""
        found = [v for lbl, v in self.series(name) if all(lbl.get(k) == w for k, w in labels.items())]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
        return found[0] if found else None

    def labels(self, name: str) -> list[dict]:
        return [lbl for lbl, _ in self.series(name)]


def refreshed(collector):
    """The collector after one synchronous refresh of each of its background sources."""
    for source in collector.sources:
        source.refresh_now()
    return collector


def scrape(*collectors) -> Scrape:
    text = Exposition(list(collectors)).render().decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    return Scrape(text, samples)


def promtool_problems(text: str) -> str:
    """What `promtool check metrics` says about an exposition ("" when it is clean)."""
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    return (done.stdout + done.stderr).strip() if done.returncode or done.stdout or done.stderr else ""


def metrics_containing(address: str, needle: str | tuple[str, ...], timeout: float = 30.0) -> str:
    """GET http://address/metrics until it contains `needle` (or each of a tuple of them: one per
    background source the test reads) or `timeout` passes; returns the last body either way, for
    the test to assert on."""
    import time
    import urllib.request
    needles = (needle,) if isinstance(needle, str) else needle
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
            body = response.read().decode()
        if all(n in body for n in needles) or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def exporter_metrics_containing(env, workdir, needle: str | tuple[str, ...], timeout: float = 30.0) -> str:
    """Start the real exporter process with `env`, return its /metrics once it contains `needle`
    (see metrics_containing), and stop it."""
    from tests.support.prometheus import start_exporter
    exporter, address = start_exporter(env, [], workdir)
    try:
        return metrics_containing(address, needle, timeout)
    finally:
        exporter.stop()
