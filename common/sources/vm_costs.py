"""Month-to-date cost of a cloud VM: pure arithmetic over recorded intervals and template rates.

- compute = seconds billed in the month (recorded running intervals) / 3600 x $/hour
- storage = GB x $/GB-month x the share of the month it was billed, where a "GB-month"
  is the calendar month's own length (28 to 31 days), months in UTC.
  How storage bills while the VM is stopped is each provider's rule (Rates.storage, declared
  on each provider's client class in admin/cloud/providers/):
  Runpod: the container disk is wiped on stop and billed only while running; the volume
  disk costs twice its running rate while the pod is stopped ($0.10 -> $0.20/GB-month
  in Runpod's storage docs), so the template keeps the running rate and we apply x2.
  Vast.ai and Jarvislabs: the instance's disk is billed at one rate for as long as it exists.
- total = compute + storage, replaced by the provider's own figures when it reports them
  (reconcile): Runpod's billing history splits compute/disk, Vast invoices give a total.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable


@dataclass(frozen=True)
class BilledCost:
    """What the provider says an instance cost in a period; None where it does not split."""

    total_usd: float
    compute_usd: float | None = None
    storage_usd: float | None = None


@dataclass(frozen=True)
class StorageRule:
    container_billed_while_stopped: bool
    volume_stopped_factor: float


@dataclass(frozen=True)
class Rates:
    storage: StorageRule  # the provider's
    compute_usd_per_hour: float
    container_gb: float
    container_usd_per_gb_month: float
    volume_gb: float
    volume_usd_per_gb_month: float


@dataclass(frozen=True)
class MonthCost:
    compute_usd: float
    storage_usd: float
    total_usd: float
    source: str = "recorded"


def month_bounds(ts: float) -> tuple[float, float]:
    """[start, end) of the UTC calendar month containing ts."""
    day = datetime.fromtimestamp(ts, timezone.utc)
    start = day.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start.timestamp(), end.timestamp()


def month_key(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m")


def overlap(a_start: float, a_end: float, b_start: float, b_end: float) -> float:
    return max(0.0, min(a_end, b_end) - max(a_start, b_start))


def running_seconds(intervals: Iterable[tuple[float, float | None]], start: float, end: float,
                    now: float) -> float:
    """Seconds of [start, min(end, now)) covered by the intervals; an open one runs until now."""
    end = min(end, now)
    return sum(overlap(s, now if e is None else e, start, end) for s, e in intervals)


def existed_seconds(created_at: float | None, terminated_at: float | None, start: float, end: float,
                    now: float) -> float:
    if created_at is None:
        return 0.0
    return overlap(created_at, now if terminated_at is None else terminated_at, start, min(end, now))


def month_cost(rates: Rates, intervals: Iterable[tuple[float, float | None]], created_at: float | None,
               terminated_at: float | None, month_start: float, month_end: float, now: float) -> MonthCost:
    rule = rates.storage
    month_seconds = month_end - month_start
    running = running_seconds(intervals, month_start, month_end, now)
    existed = existed_seconds(created_at, terminated_at, month_start, month_end, now)
    stopped = max(0.0, existed - running)
    compute = running / 3600.0 * rates.compute_usd_per_hour
    container_seconds = existed if rule.container_billed_while_stopped else running
    container = rates.container_gb * rates.container_usd_per_gb_month * container_seconds / month_seconds
    volume_seconds = running + rule.volume_stopped_factor * stopped
    volume = rates.volume_gb * rates.volume_usd_per_gb_month * volume_seconds / month_seconds
    storage = container + volume
    return MonthCost(compute, storage, compute + storage)


def reconcile(estimate: MonthCost, billed: BilledCost | None) -> MonthCost:
    """The provider's figures win where it gives them; a bare total keeps our storage estimate
    (capped by the total) and attributes the rest to compute."""
    if billed is None:
        return estimate
    if billed.compute_usd is not None and billed.storage_usd is not None:
        return MonthCost(billed.compute_usd, billed.storage_usd, billed.total_usd, "provider")
    storage = min(estimate.storage_usd, billed.total_usd)
    return MonthCost(billed.total_usd - storage, storage, billed.total_usd, "provider")
