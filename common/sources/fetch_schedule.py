"""When each project's background `git fetch` is due: once per interval, each in its own slot.

A project's slot is a fixed offset into the interval, from a hash of its name; the caller
fetches the projects whose slot came every minute or so, so 200 projects fetched every 15
minutes make about 13 fetches a minute rather than a burst of 200 (and their git children)
every 15 minutes. A project is due when neither its last sync (fetch,
pull, push or clone, read from git's own files: common/sources/git_status.last_sync_timestamp)
nor our last attempt comes after its latest slot. So a restart fetches no burst, a failed
fetch waits for the next slot, and no project goes longer than the interval without a fetch
once the exporter runs.
"""
from __future__ import annotations

import zlib


def latest_slot(name: str, now: float, interval: float) -> float:
    """Unix time of the project's most recent slot at or before `now` (seconds)."""
    phase = zlib.crc32(name.encode("utf-8", "surrogateescape")) / 2 ** 32 * interval
    return now - (now - phase) % interval


def is_due(name: str, last_sync: float | None, last_attempt: float | None, now: float,
           interval: float, watched_since: float | None = None) -> bool:
    """True when the project should be fetched now (times are unix seconds; None: never).

    `watched_since` (the exporter's start) counts as a sync: after a start every project is
    fetched at its first slot, within one interval, rather than all at once: git leaves no
    sync time on a clone, and after a night off every project's last sync is old.
    """
    # A time ahead of the clock (the clock set back, a file dated in the future) would hold the
    # project back until the clock caught up: it counts as no time at all.
    seen = max((t for t in (last_sync, last_attempt, watched_since) if t is not None and t <= now),
               default=None)
    return seen is None or seen < latest_slot(name, now, interval)
