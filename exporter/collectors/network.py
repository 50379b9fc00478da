"""The primary network interface (the default route's): address, traffic and the highest rates seen.

The interface and its address are looked up in the background once a minute. Traffic
rates are measured between scrapes; their maxima are kept in a small JSON file in the
state dir so they survive exporter restarts.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Iterable

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.background import BackgroundSource
from common.config import Settings
from exporter.state_file import save_json
from exporter.collectors.base import PREFIX, WordslabCollector

log = logging.getLogger(__name__)

ROUTE_PATH = Path("/proc/net/route")
INTERFACE_REFRESH_SECONDS = 60.0
MAX_RATES_FILE = "network_max_rates.json"
_RTF_UP = 0x1


def default_route_interface(route_path: Path = ROUTE_PATH) -> str | None:
    """Interface of the IPv4 default route with the lowest metric, from /proc/net/route."""
    best = None
    try:
        lines = route_path.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[1] != "00000000" or fields[7] != "00000000":
            continue
        try:
            up, metric = int(fields[3], 16) & _RTF_UP, int(fields[6])
        except ValueError:
            continue
        if up and (best is None or metric < best[1]):
            best = (fields[0], metric)
    return best[0] if best else None


def primary_interface(route_path: Path = ROUTE_PATH) -> tuple[str, str] | None:
    """(interface, address): the default route's, else the first interface up with IPv4, else loopback."""
    addrs = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    chosen = default_route_interface(route_path)
    if chosen not in addrs:
        up = [name for name, st in stats.items() if st.isup and name in addrs]
        with_ipv4 = [n for n in up if n != "lo" and any(a.family == socket.AF_INET for a in addrs[n])]
        chosen = with_ipv4[0] if with_ipv4 else ("lo" if "lo" in addrs else None)
    if chosen is None:
        return None
    ordered = sorted(addrs[chosen], key=lambda a: a.family != socket.AF_INET)
    address = next((a.address.split("%")[0] for a in ordered
                    if a.family in (socket.AF_INET, socket.AF_INET6)), "")
    return chosen, address


class MaxRateStore:
    """{"eth0": {"receive": B/s, "transmit": B/s}} in a JSON file, rewritten atomically on change."""

    def __init__(self, path: Path | None):
        self.path = path  # None: kept in memory only
        self.rates: dict[str, dict[str, float]] = self._load() if path else {}
        self._warned = False

    def _load(self) -> dict[str, dict[str, float]]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable network max rates file %s: %s", self.path, exc)
            return {}
        rates = {}
        for iface, values in raw.items() if isinstance(raw, dict) else ():
            if isinstance(values, dict):
                rates[iface] = {d: float(v) for d, v in values.items()
                                if d in ("receive", "transmit") and isinstance(v, (int, float)) and v >= 0}
        return rates

    def get(self, iface: str, direction: str) -> float:
        return self.rates.get(iface, {}).get(direction, 0.0)

    def observe(self, iface: str, direction: str, rate: float) -> bool:
        if rate <= self.get(iface, direction):
            return False
        self.rates.setdefault(iface, {})[direction] = rate
        return True

    def save(self) -> None:
        if self.path is None:
            return
        try:
            save_json(self.path, self.rates)
        except OSError as exc:  # keep them in memory; warn once, not at every scrape
            if not self._warned:
                log.warning("cannot save network max rates to %s: %s", self.path, exc)
                self._warned = True


class NetworkCollector(WordslabCollector):
    name = "network"

    def __init__(self, settings: Settings, *, route_path: Path = ROUTE_PATH,
                 min_rate_interval_seconds: float = 1.0):
        super().__init__(settings)
        self.interface_source = BackgroundSource(
            "network_interface", lambda: primary_interface(route_path), INTERFACE_REFRESH_SECONDS)
        self.sources.append(self.interface_source)
        self.max_rates = MaxRateStore(Path(settings.state_dir) / MAX_RATES_FILE if settings.state_dir else None)
        # Scrapes closer than this (a manual curl right after Prometheus) would give noisy rates.
        self.min_rate_interval_seconds = min_rate_interval_seconds
        self._lock = threading.Lock()
        self._last: tuple[str, float, int, int] | None = None  # interface, monotonic time, rx, tx

    def _observe(self, iface: str, received: int, sent: int) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last
            if last is not None and last[0] == iface:
                elapsed = now - last[1]
                if elapsed < self.min_rate_interval_seconds:
                    return
                changed = False
                for direction, value, before in (("receive", received, last[2]), ("transmit", sent, last[3])):
                    if value >= before:  # a counter reset gives no rate
                        changed |= self.max_rates.observe(iface, direction, (value - before) / elapsed)
                if changed:
                    self.max_rates.save()
            self._last = (iface, now, received, sent)

    def collect_metrics(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            PREFIX + "network_info",
            "Always 1: the primary interface (the default route's) and its IP address, refreshed every minute.",
            labels=["interface", "ip_address"])
        received = CounterMetricFamily(PREFIX + "network_receive_bytes",
                                       "Bytes received on the primary interface.", labels=["interface"])
        sent = CounterMetricFamily(PREFIX + "network_transmit_bytes",
                                   "Bytes sent on the primary interface.", labels=["interface"])
        max_received = GaugeMetricFamily(
            PREFIX + "network_receive_max_rate_bytes_per_second",
            "Highest receive rate seen between two scrapes, kept across exporter restarts.",
            labels=["interface"])
        max_sent = GaugeMetricFamily(
            PREFIX + "network_transmit_max_rate_bytes_per_second",
            "Highest transmit rate seen between two scrapes, kept across exporter restarts.",
            labels=["interface"])
        primary = self.interface_source.snapshot().value
        if primary is not None:
            iface, address = primary
            info.add_metric([iface, address], 1)
            counters = psutil.net_io_counters(pernic=True).get(iface)
            if counters is not None:
                self._observe(iface, counters.bytes_recv, counters.bytes_sent)
                received.add_metric([iface], counters.bytes_recv)
                sent.add_metric([iface], counters.bytes_sent)
                max_received.add_metric([iface], self.max_rates.get(iface, "receive"))
                max_sent.add_metric([iface], self.max_rates.get(iface, "transmit"))
        yield from (info, received, sent, max_received, max_sent)
