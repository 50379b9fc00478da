"""Slow sources refreshed in a background thread, never on the scrape path.

A collector reads `snapshot()`, which is always the last successful value (or None
before the first success) plus how the last refresh went, so a source timing out
shows as `wordslab_source_refresh_success 0` while its last good data stays visible.
`Snapshot.version` changes only when the value does, so a reader (the exposition cache)
can tell "nothing new" by comparing one integer instead of the whole value.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, Optional, TypeVar

from common.log_changes import ChangeLog

log = logging.getLogger(__name__)

T = TypeVar("T")
# The error of a source before its first refresh.
NOT_REFRESHED = "not refreshed yet"


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    value: Optional[T]
    ok: bool
    error: str | None
    refreshed_at: float | None  # unix time of the last successful refresh
    duration_seconds: float
    version: int = 0  # bumped when `value` changes (not on an equal or failed refresh)


def _same(old, new) -> bool:
    if old is new:
        return True
    try:
        return bool(old == new)
    except Exception:  # values without a usable equality count as changed
        return False


class BackgroundSource(Generic[T]):
    def __init__(self, name: str, refresh: Callable[[], T], interval_seconds: float):
        self.name = name
        self._refresh = refresh
        self.interval_seconds = interval_seconds
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()  # one refresh at a time (thread, page, admin action)
        self._snapshot: Snapshot[T] = Snapshot(None, False, NOT_REFRESHED, None, 0.0)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[], None]] = []
        self._change_listeners: list[Callable[[], None]] = []
        # A source failing the same way at every refresh (Ollama not installed) logs it once.
        self._failure_log = ChangeLog(log)
        # For sources woken by file events: "inotify" or "polling" (wordslab_source_watch_mode).
        self.watch_mode: Callable[[], str] | None = None
        # Whether the running refresh was asked for (request_refresh) rather than due by the interval.
        self.requested = False

    def refresh_now(self) -> Snapshot[T]:
        with self._refreshing:
            return self._refresh_locked()

    def in_own_thread(self) -> bool:
        """True inside this source's refresh thread (not a direct refresh_now from elsewhere)."""
        return threading.current_thread() is self._thread

    def _refresh_locked(self) -> Snapshot[T]:
        started = time.perf_counter()
        changed = False
        try:
            value = self._refresh()
        except Exception as exc:  # keep the last good value, report the failure
            self._failure_log.report("refresh", type(exc).__name__, "source %s refresh failed: %s "
                                     "(not logged again until it recovers or fails differently)",
                                     self.name, exc)
            with self._lock:
                old = self._snapshot
                self._snapshot = Snapshot(old.value, False, f"{type(exc).__name__}: {exc}",
                                          old.refreshed_at, time.perf_counter() - started, old.version)
        else:
            self._failure_log.report("refresh", None, recovered=f"source {self.name} refreshes again")
            with self._lock:
                old = self._snapshot
            # Compared here, once per refresh in this thread, not by every reader.
            changed = old.refreshed_at is None or not _same(old.value, value)
            with self._lock:
                self._snapshot = Snapshot(value if changed else old.value, True, None, time.time(),
                                          time.perf_counter() - started,
                                          old.version + 1 if changed else old.version)
        self._notify(self._listeners)
        if changed:
            self._notify(self._change_listeners)
        return self.snapshot()

    def _notify(self, listeners: list[Callable[[], None]]) -> None:
        for listener in listeners:
            try:
                listener()
            except Exception:  # a listener's failure must not stop the refresh loop
                log.exception("listener of source %s failed", self.name)

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Called in the refreshing thread after every refresh, successful or not."""
        self._listeners.append(listener)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Called in the refreshing thread after a refresh that changed the value."""
        self._change_listeners.append(listener)

    def snapshot(self) -> Snapshot[T]:
        with self._lock:
            return self._snapshot

    def request_refresh(self) -> None:
        """Ask the thread to refresh soon (e.g. after an admin action or a file change)."""
        self._wake.set()

    def start(self) -> None:
        """Start the refresh thread; idempotent, and a stopped source can be started again."""
        with self._lock:
            if self._thread is not None and not self._stop.is_set():
                return
            self._stop, self._wake = threading.Event(), threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop, self._wake),
                                            name=f"source-{self.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self, stop: threading.Event, wake: threading.Event) -> None:
        while not stop.is_set():
            self.refresh_now()
            self.requested = wake.wait(self.interval_seconds)
            wake.clear()


class SourceGroup:
    """Something made of background sources, started and stopped together."""

    sources: list[BackgroundSource]

    def start(self) -> None:
        """Start the sources' refresh threads. Never called on the scrape or request path."""
        for source in self.sources:
            source.start()

    def stop(self) -> None:
        for source in self.sources:
            source.stop()
