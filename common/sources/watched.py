"""A background source re-read when files under its directories change (common/watch.py).

`refresh(changed)` gets the paths changed since the last refresh, or None for a full read: the
first one, a sweep every `sweep_seconds` (the safety net), and every refresh once the kernel's
watches ran out (then every `polling_seconds`). A directory that does not exist yet is watched
through its nearest existing parent, so a model cache created later is noticed too.
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Callable, Generic, Iterable, TypeVar

from common.background import BackgroundSource
from common.watch import Watcher, nearest_dir

T = TypeVar("T")
DEBOUNCE_SECONDS = 0.5


class WatchedSource(BackgroundSource[T], Generic[T]):
    def __init__(self, name: str, refresh: Callable[[set[str] | None], T], roots: Callable[[], Iterable[Path]],
                 *, sweep_seconds: float, polling_seconds: float, watching_interval_seconds: float | None = None,
                 observer_factory: Callable | None = None):
        """`watching_interval_seconds`: how often to refresh anyway while watching (for what files do
        not show, e.g. which Ollama models are loaded); by default only the sweep."""
        super().__init__(name, self._refresh_watched, polling_seconds)
        self._read = refresh
        self._roots = roots
        self.sweep_seconds = sweep_seconds
        self.polling_seconds = polling_seconds
        self.watching_interval_seconds = watching_interval_seconds or sweep_seconds
        self._changed: set[str] = set()
        self._changed_lock = threading.Lock()
        self._swept = -math.inf
        self._watched_roots: set[Path] = set()
        self._new_root = False
        self.watcher = Watcher(name, self._on_change, observer_factory, retry_seconds=sweep_seconds)
        self.watch_mode = lambda: self.watcher.mode

    def _on_change(self, path: str) -> None:
        with self._changed_lock:
            self._changed.add(path)
        self.request_refresh()

    def _ensure_watched(self) -> bool:
        """Watch the roots; True while watching works. A root watched for the first time sets
        `_new_root`: files made in it before its watch began are only seen by a full read."""
        for root in self._roots():
            if not root.is_dir():
                self._watched_roots.discard(root)
                self._watch_nearest_parent(root)
            if root.is_dir():  # also one made while its parent's watch was being set up
                if self.watcher.watch(root, recursive=True) and root not in self._watched_roots:
                    self._watched_roots.add(root)
                    self._new_root = True
        return self.watcher.mode == "inotify"

    def _watch_nearest_parent(self, root: Path) -> None:
        """Watch the nearest existing parent of a missing root, which wakes us when the next level
        appears; again one level down while levels appear meanwhile (`mkdir -p` of a cache races
        the watch: a level made before its parent's watch began sends no event)."""
        parent = nearest_dir(root)
        while parent is not None and not root.is_dir():
            self.watcher.watch(parent, recursive=False)
            nearest = nearest_dir(root)
            if nearest == parent:
                return
            parent = nearest

    def _refresh_watched(self) -> T:
        watching = self._ensure_watched()
        due_in = self.sweep_seconds - (time.monotonic() - self._swept)
        sweep = not watching or due_in <= 0
        # Events between sweeps must not push the next sweep back: the thread waits this long
        # after each refresh, whatever woke it.
        self.interval_seconds = (min(self.watching_interval_seconds, self.sweep_seconds if sweep else due_in)
                                 if watching else self.polling_seconds)
        # Woken by an event in its own thread; a direct call (an admin action) reads everything.
        requested = self.requested and self.in_own_thread()
        if not sweep and requested:
            with self._changed_lock:
                pending = bool(self._changed)
            if pending:
                time.sleep(DEBOUNCE_SECONDS)  # let the rest of a burst of events arrive
        with self._changed_lock:
            changed, self._changed = self._changed, set()
        new_root, self._new_root = self._new_root, False
        if sweep or new_root or not requested:  # also the watching interval's tick: read everything
            self._swept = time.monotonic() if sweep else self._swept
            return self._read(None)
        changed = {p for p in changed if self._relevant(p)}
        previous = self.snapshot()
        if not changed and previous.ok:
            return previous.value  # e.g. a file beside a watched parent, or only the periodic tick
        return self._read(changed)

    def _relevant(self, path: str) -> bool:
        """Under a root, or a root's missing ancestor being made."""
        candidate = Path(path)
        return any(candidate == root or root in candidate.parents or candidate in root.parents
                   for root in self._roots())

    def stop(self) -> None:
        super().stop()
        self.watcher.stop()
