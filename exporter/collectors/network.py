"""The primary network interface (the IPv4 default route's, else the IPv6 one's): address, traffic
and the highest rates seen.

The interface and its address are looked up in the background once a minute. Traffic
rates are measured between scrapes; their maxima are kept in a small JSON file in the
state dir so they survive exporter restarts.
"""
from __future__ import annotations

import ipaddress
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
ROUTE6_PATH = Path("/proc/net/ipv6_route")
INTERFACE_REFRESH_SECONDS = 60.0
MAX_RATES_FILE = "network_max_rates.json"
_RTF_UP = 0x1
_RTF_REJECT = 0x200


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


def default_route6_interface(route_path: Path = ROUTE6_PATH) -> str | None:
    """Interface of the IPv6 default route (::/0) with the lowest metric, from /proc/net/ipv6_route.

    Fields: destination, prefix length, source, source prefix length, next hop, metric,
    refcount, use, flags, device. The kernel lists an unreachable ::/0 on `lo` (RTF_REJECT):
    not a route out.
    """
    best = None
    try:
        lines = route_path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[0] != "0" * 32 or fields[1] != "00":
            continue
        try:
            flags, metric = int(fields[8], 16), int(fields[5], 16)
        except ValueError:
            continue
        if flags & _RTF_UP and not flags & _RTF_REJECT and (best is None or metric < best[1]):
            best = (fields[9], metric)
    return best[0] if best else None


def _ipv6_rank(address: str) -> int:
    """Global addresses first, then unique-local and others, link-local last."""
    try:
        ip = ipaddress.IPv6Address(address.split("%")[0])
    except ValueError:
        return 3
    if ip.is_link_local or ip.is_loopback:
        return 2
    return 0 if ip.is_global else 1


def interface_address(addresses) -> str:
    """The interface's IPv4 address, else its best IPv6 one (global before unique-local before link-local)."""
    v4 = [a.address for a in addresses if a.family == socket.AF_INET]
    if v4:
        return v4[0]
    v6 = sorted((a.address.split("%")[0] for a in addresses if a.family == socket.AF_INET6), key=_ipv6_rank)
    return v6[0] if v6 else ""


def primary_interface(route_path: Path = ROUTE_PATH, route6_path: Path = ROUTE6_PATH) -> tuple[str, str] | None:
    """(interface, address): the IPv4 default route's, else the IPv6 default route's (an IPv6-only
    VM), else the first interface up with an address other than loopback's, else loopback."""
    addrs = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    chosen = default_route_interface(route_path)
    if chosen not in addrs:
        chosen = default_route6_interface(route6_path)
    if chosen not in addrs:
        up = [name for name, st in stats.items() if st.isup and name in addrs and name != "lo"]
        with_ipv4 = [n for n in up if any(a.family == socket.AF_INET for a in addrs[n])]
        with_ipv6 = [n for n in up if any(a.family == socket.AF_INET6 and _ipv6_rank(a.address) < 2
                                          for a in addrs[n])]
        chosen = (with_ipv4 or with_ipv6 or [None])[0] or ("lo" if "lo" in addrs else None)
    if chosen is None:
        return None
    return chosen, interface_address(addrs[chosen])


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

    def __init__(self, settings: Settings, *, route_path: Path = ROUTE_PATH, route6_path: Path = ROUTE6_PATH,
                 min_rate_interval_seconds: float = 1.0):
        super().__init__(settings)
        self.interface_source = BackgroundSource(
            "network_interface", lambda: primary_interface(route_path, route6_path), INTERFACE_REFRESH_SECONDS)
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
