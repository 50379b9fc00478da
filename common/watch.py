"""File-change notification for background sources (watchdog: inotify on Linux).

A `Watcher` watches a few directory trees and calls `on_change(path)` for every created,
deleted, moved, written, closed-after-write or attribute-changed (`touch`, `chmod`: only
IN_ATTRIB comes for those) file or directory (never for reads: our own
`git status` and directory walks open files, and must not wake us again). When the kernel's
watches run out (inotify max_user_watches, ENOSPC; or max_user_instances, EMFILE) it gives all
of them up and says so in `mode` ("polling"): the sources then sweep at their polling interval,
and `wordslab_source_watch_mode` shows it. Watches are tried again `retry_seconds` after giving
up (another program, an editor's file watcher starting, may have held the watches only for a
while): polling is not for the rest of the process's life. watchdog raises only when a tree's root cannot be
watched and silently skips the subdirectories the kernel refuses, so after each (re)check one
probe watch asks the kernel for room: none left means some directory may be unwatched.
"""
from __future__ import annotations

import ctypes
import errno
import logging
import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

from watchdog.events import (DirAttribEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
                             FileAttribEvent, FileClosedEvent, FileCreatedEvent, FileDeletedEvent,
                             FileModifiedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler)
from watchdog.observers import Observer

log = logging.getLogger(__name__)

# watchdog says so when a new directory is seen twice while it adds watches for a fresh tree
# (its event and its recursive walk race); the watch is simply kept. One line per directory
# made under the workspace would flood the log.
warnings.filterwarnings("ignore", message="Callback with id .* already exists for watch",
                        category=RuntimeWarning, module=r"watchdog\.")

WATCH_MODES = ("inotify", "polling")
# Kernel-side filter: no open/access/close-without-write events reach us at all.
EVENTS = [FileCreatedEvent, FileDeletedEvent, FileMovedEvent, FileModifiedEvent, FileClosedEvent,
          FileAttribEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent, DirAttribEvent]
# What running out of kernel watch resources looks like.
EXHAUSTED = (errno.ENOSPC, errno.EMFILE, errno.ENFILE, errno.ENOMEM)


def kernel_room_error(path: str) -> OSError | None:
    """None while the kernel would give this user one more inotify watch (and instance);
    else the OSError (ENOSPC, EMFILE) it gives. A watch fails only at the limit, so a tree
    whose subdirectories were refused leaves none."""
    try:
        from watchdog.observers.inotify_c import inotify_add_watch, inotify_init
    except (ImportError, AttributeError, OSError):
        return None  # no inotify here (watchdog polls or uses another API)
    fd = inotify_init()
    if fd < 0:
        err = ctypes.get_errno()
        return OSError(err, os.strerror(err))
    try:
        if inotify_add_watch(fd, os.fsencode(path), 0x4) < 0:  # IN_ATTRIB
            err = ctypes.get_errno()
            if err in EXHAUSTED:
                return OSError(err, os.strerror(err))
        return None
    finally:
        os.close(fd)


def nearest_dir(path: Path) -> Path | None:
    """The nearest existing directory above `path` (what to watch for a file or folder that may
    be made later), or None."""
    return next((p for p in path.parents if p.is_dir()), None)


class _Handler(FileSystemEventHandler):
    def __init__(self, on_change: Callable[[str], None]):
        self.on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                self.on_change(os.fsdecode(path))


class _Shared:
    """One observer (one inotify instance, of the user's max_user_instances) for the process."""

    lock = threading.Lock()
    observer = None
    refs: dict = {}  # ObservedWatch -> how many Watchers scheduled it

    @classmethod
    def get(cls):
        if cls.observer is None or not cls.observer.is_alive():
            observer = Observer()
            observer.daemon = True
            observer.start()
            cls.observer, cls.refs = observer, {}
        return cls.observer


class Watcher:
    """Watches directory trees for one source; `mode` is "inotify" or "polling".

    Watchers share the process's one observer unless `observer_factory` gives them their own.
    """

    def __init__(self, name: str, on_change: Callable[[str], None], observer_factory=None,
                 retry_seconds: float = 900.0):
        self.name = name
        self.retry_seconds = retry_seconds
        self._gave_up_at = -math.inf
        self._handler = _Handler(on_change)
        self._observer_factory = observer_factory
        self._observer = None
        self._watched: dict[tuple[str, bool], object] = {}  # -> watchdog's ObservedWatch
        self._lock = threading.Lock()
        self.mode = "inotify"
        self.error: str | None = None

    def watch(self, path: Path, recursive: bool = True) -> bool:
        """Watch `path` (idempotent); False when it does not exist or watching is given up."""
        key = (str(path), recursive)
        with self._lock:
            if self.mode != "inotify":
                if time.monotonic() - self._gave_up_at < self.retry_seconds:
                    return False
                log.info("%s: trying file watches again", self.name)
                self.mode, self.error = "inotify", None
            if not os.path.isdir(path):
                return False
            if key in self._watched:
                if self._alive(self._watched[key]):
                    return self._room_left(path)
                # The directory was deleted (its emitter stopped) and made again: watch anew.
                self._release(self._watched.pop(key))
            try:
                watch = self._schedule(str(path), recursive)
            except OSError as exc:
                if exc.errno not in EXHAUSTED:
                    log.warning("cannot watch %s: %s", path, exc)
                    return False  # e.g. removed meanwhile: the next sweep tries again
                self._give_up(f"{path}: {exc}")
                return False
            self._watched[key] = watch
            return self._room_left(path)

    def _room_left(self, path: Path) -> bool:
        """False (and polling from now on) when the kernel has no watch left: a directory
        of ours (made just now, or skipped by watchdog's recursive walk) may be unwatched."""
        if self._observer_factory is not None:
            return True  # a test's own observer: its watches are not the kernel's
        error = kernel_room_error(str(path))
        if error is None:
            return True
        self._give_up(f"{path}: {error}")
        return False

    def unwatch(self, path: Path, recursive: bool = True) -> None:
        """Stop watching `path` (nothing if it was not watched)."""
        with self._lock:
            watch = self._watched.pop((str(path), recursive), None)
            if watch is not None:
                self._release(watch)

    def _schedule(self, path: str, recursive: bool):
        if self._observer_factory is None:
            with _Shared.lock:
                self._observer = _Shared.get()
                watch = self._observer.schedule(self._handler, path, recursive=recursive, event_filter=EVENTS)
                _Shared.refs[watch] = _Shared.refs.get(watch, 0) + 1
                return watch
        if self._observer is None:
            self._observer = self._observer_factory()
            self._observer.daemon = True
            self._observer.start()
        return self._observer.schedule(self._handler, path, recursive=recursive, event_filter=EVENTS)

    def _alive(self, watch) -> bool:
        return any(e.watch == watch and e.is_alive() for e in self._observer.emitters)

    def _release(self, watch) -> None:
        """Stop our handler's events for `watch`; the watch itself goes with its last user."""
        try:
            if self._observer_factory is None:
                with _Shared.lock:
                    left = _Shared.refs.get(watch, 1) - 1
                    if left > 0:
                        _Shared.refs[watch] = left
                        self._observer.remove_handler_for_watch(self._handler, watch)
                        return
                    _Shared.refs.pop(watch, None)
            self._observer.unschedule(watch)
        except (KeyError, OSError):
            pass

    def _give_up(self, error: str) -> None:
        log.warning("%s: file watches exhausted (%s); falling back to polling", self.name, error)
        self.mode, self.error = "polling", error
        self._gave_up_at = time.monotonic()
        self._release_all()

    def _release_all(self) -> None:
        for watch in self._watched.values():
            self._release(watch)
        self._watched.clear()
        if self._observer is not None and self._observer_factory is not None:
            try:
                self._observer.stop()
            except Exception:  # already stopping; nothing else to release
                log.debug("observer stop", exc_info=True)
            self._observer = None

    def stop(self) -> None:
        with self._lock:
            self._release_all()
