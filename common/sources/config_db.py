"""The exporter's one read path to the admin's SQLite file.

One background source (`config_db`) over one long-lived read-only engine reads every
registered table in one short read transaction and publishes the result as a snapshot;
collectors read the snapshot, so a scrape never touches the DB and a process holding a
lock on it only makes `wordslab_source_refresh_success{source="config_db"}` 0 while the
last good rows stay published.

The source polls every POLL_SECONDS but reads only when the DB file or its WAL changed
(their stat: no file is opened behind SQLite's back), or FORCED_READ_SECONDS passed (reads
that depend on the clock: recent jobs, this month's costs). A missing file means nothing
configured: empty rows, not a failure.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from sqlalchemy import Engine, select
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session

from common import redact
from common.background import BackgroundSource
from common.store.db import connect
from common.store.health import DatabaseUnusable, advice, reason_of
from common.store.secrets import stored_secrets

POLL_SECONDS = 2.0
FORCED_READ_SECONDS = 30.0
# A writer holding the lock longer than this fails the refresh (reported), not the scrape.
BUSY_TIMEOUT_MS = 1000

Read = Callable[[Session], Any]
EMPTY: Mapping[str, Any] = MappingProxyType({})


def _signature(path: Path) -> tuple | None:
    """(inode, mtime, size) of the DB file and its WAL; None when the DB does not exist."""
    parts = []
    for suffix in ("", "-wal"):
        try:
            st = os.stat(f"{path}{suffix}")
        except FileNotFoundError:
            if not suffix:
                return None
            parts.append(None)
        else:
            parts.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(parts)


class ConfigDb:
    """Snapshot of the admin's tables for the exporter: `value(name)` on the scrape path,
    `fresh(name)` from other background sources (re-reads only if the file changed)."""

    def __init__(self, db_path: Path | None, poll_seconds: float = POLL_SECONDS):
        self.db_path = Path(db_path) if db_path is not None else None
        self._reads: dict[str, tuple[Read, Any]] = {}
        self._engine: Engine | None = None
        self._engine_inode: int | None = None
        self._read_signature: tuple | None = None
        self._read_names: frozenset[str] = frozenset()
        self._read_at = 0.0
        self._lock = threading.Lock()
        self.source: BackgroundSource[Mapping[str, Any]] = BackgroundSource(
            "config_db", self._refresh, poll_seconds)

    def add_read(self, name: str, read: Read, default: Any) -> None:
        """Register a read run in every refresh; `default` stands for it while its table is missing.
        The first registration of a name wins (collectors and probes register the same reads)."""
        if name in self._reads:
            return
        self._reads[name] = (read, default)
        self.source.request_refresh()

    def value(self, name: str) -> Any:
        """The last good result of read `name` (its default before the first read)."""
        snapshot = self.source.snapshot().value or EMPTY
        return snapshot.get(name, self._reads[name][1])

    def fresh(self, name: str) -> Any:
        """Like `value`, re-reading first if the DB changed: for background callers only."""
        self.source.refresh_now()
        return self.value(name)

    def _refresh(self) -> Mapping[str, Any]:
        with self._lock:
            try:
                return self._read_if_changed()
            except DatabaseError as exc:
                if isinstance(exc, OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
                    raise  # a writer holds the lock: retried next poll
                # A damaged file: one line saying what to do (the failure shows as a metric).
                raise DatabaseUnusable(advice(self.db_path, reason_of(exc))) from None

    def _read_if_changed(self) -> Mapping[str, Any]:
        signature = _signature(self.db_path) if self.db_path is not None else None
        if signature is None:
            self._dispose()
            self._read_signature = None
            return EMPTY
        previous = self.source.snapshot()
        names = frozenset(self._reads)
        if (previous.ok and signature == self._read_signature and names == self._read_names
                and time.monotonic() - self._read_at < FORCED_READ_SECONDS):
            return previous.value
        engine = self._engine_for(signature[0][0])
        values = {}
        with Session(engine) as session, session.begin():  # one read transaction: a consistent view
            # Keys stored in the admin: masked in every label and log from this read on.
            redact.remember(*stored_secrets(session))
            for name, (read, default) in list(self._reads.items()):
                try:
                    values[name] = read(session)
                except OperationalError as exc:
                    if "no such table" not in str(exc):
                        raise
                    values[name] = default  # a DB the admin has not initialised (or upgraded) yet
        self._read_signature, self._read_names, self._read_at = signature, names, time.monotonic()
        return MappingProxyType(values)

    def _engine_for(self, inode: int) -> Engine:
        if self._engine is not None and self._engine_inode != inode:
            self._dispose()  # the file was replaced: reopen it through SQLite, not behind its back
        if self._engine is None:
            self._engine = connect(self.db_path, readonly=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
            self._engine_inode = inode
        return self._engine

    def _dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def close(self) -> None:
        self.source.stop()
        with self._lock:
            self._dispose()


def all_rows(model, convert: Callable[[Any], Any]) -> Read:
    """A read of every row of `model` by name, each made a plain value by `convert` in the session."""
    return lambda session: tuple(convert(row) for row in session.scalars(select(model).order_by(model.name)))


_shared: dict[Path | None, ConfigDb] = {}
_shared_lock = threading.Lock()


def shared(db_path: Path | None) -> ConfigDb:
    """The process's one ConfigDb for `db_path`, so every collector reads the same snapshot."""
    key = Path(db_path) if db_path is not None else None
    with _shared_lock:
        if key not in _shared:
            _shared[key] = ConfigDb(key)
        return _shared[key]
