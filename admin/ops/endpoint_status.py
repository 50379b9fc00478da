"""Live status and last error of the configured endpoints, for the admin's list.

Actions record a status (starting, running, stopped, error) when they run, but a server can
change on its own afterwards (a vLLM process that dies stays "running" in its row while
/metrics says error). So a background thread of the admin probes every configured endpoint
with the exporter's own probe (`common.sources.endpoint_probe.probe`, built from the row
as the exporter builds it) and writes the status and the last error back to the row.

Why a thread and not a probe at list time: a probe may wait its timeouts (1 s connect, 3 s
read) per endpoint, so a hung server would slow every list page. Here requests never probe:
the list reads rows; opening it only asks the thread for an early refresh.

Writes are conditional on the row being unchanged since it was read (its updated_at), so a
job that moved the row meanwhile (start, stop, load) is never overwritten by a stale probe.
Only changes are written; the last error text is kept after recovery, as in /metrics. The
exporter keeps probing on its own and reads the recorded status as the status wanted; the
probe gives the same answer for its own result, so both agree.

Interval: WORDSLAB_ENDPOINT_STATUS_INTERVAL_SECONDS (default 10 s, the exporter's); 0 turns
the thread off (tests call `refresh_now()`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from common import nvml as nvml_module
from common.log_changes import ChangeLog
from common.background import BackgroundSource, Snapshot
from common.config import Settings
from common.nvml import Nvml
from common.sources.endpoint_probe import (REFRESH_SECONDS, EndpointState, EndpointTarget, error_to_show, probe,
                                          target_from_row, unconfigured_discovered)
from common.store.services import Endpoint

from admin.ops.endpoint_ops import reap_exited_children

log = logging.getLogger(__name__)
# Probed every 10 s: an odd row is logged once, not at every probe.
_problems = ChangeLog(log)

def status_interval(settings: Settings) -> float:
    configured = settings.endpoint_status_interval_seconds
    return REFRESH_SECONDS if configured is None else configured


@dataclass(frozen=True)
class _Seen:
    """A row as read before probing: the write applies only if it is still so."""

    endpoint_id: int
    updated_at: datetime | None
    status: str
    last_error: str
    target: EndpointTarget


class EndpointStatusRefresher:
    def __init__(self, settings: Settings, sessions: sessionmaker, nvml: Nvml | None = None,
                 interval_seconds: float | None = None):
        self.settings = settings
        self.sessions = sessions
        self.nvml = nvml or nvml_module.shared()
        interval = status_interval(settings) if interval_seconds is None else interval_seconds
        self.source = BackgroundSource("endpoint_status", self.refresh, interval)
        # The platform's own services the exporter also lists (ollama, hermes-agent...): not rows,
        # so kept here for the list page, probed with the rows.
        self.discovered: list[EndpointState] = []

    @property
    def interval_seconds(self) -> float:
        return self.source.interval_seconds

    def start(self) -> None:
        if self.source.interval_seconds > 0:
            self.source.start()

    def stop(self) -> None:
        self.source.stop()

    def request_refresh(self) -> None:
        self.source.request_refresh()

    def refresh_now(self) -> Snapshot[int]:
        return self.source.refresh_now()

    def refresh(self) -> int:
        """Probe every configured endpoint; returns how many rows changed."""
        reap_exited_children()
        changed = 0
        rows = self._read()
        self.discovered = self._probe_discovered([seen.target for seen in rows])
        for seen in rows:
            try:
                result = probe(seen.target, self.nvml, self.settings)
            except Exception as exc:  # one odd row (say, an unusable base URL) must not hide the others
                if _problems.changed(seen.target.name, type(exc).__name__):
                    log.exception("probing endpoint %s failed (not logged again until it changes)", seen.target.name)
                continue
            error = error_to_show(result, seen.target, seen.last_error)
            if (result.status, error) != (seen.status, seen.last_error):
                changed += self._write(seen, result.status, error)
        return changed

    def _probe_discovered(self, configured: list[EndpointTarget]) -> list[EndpointState]:
        states = []
        for target in unconfigured_discovered(self.settings.env, configured):
            try:
                result = probe(target, self.nvml, self.settings)
            except Exception as exc:  # shown on its row, never hides the others
                states.append(EndpointState(target, "error", None, f"probe failed: {type(exc).__name__}: {exc}"))
                continue
            states.append(EndpointState(target, result.status, result.vram_bytes, result.error))
        return states

    def _read(self) -> list[_Seen]:
        with self.sessions() as session:
            return [_Seen(row.id, row.updated_at, row.status or "", row.last_error or "", target_from_row(row))
                    for row in session.scalars(select(Endpoint).order_by(Endpoint.name))]

    def _write(self, seen: _Seen, status: str, error: str) -> int:
        with self.sessions.begin() as session:
            result = session.execute(
                update(Endpoint)
                .where(Endpoint.id == seen.endpoint_id, Endpoint.updated_at == seen.updated_at)
                .values(status=status, last_error=error)
                .execution_options(synchronize_session=False))
            return result.rowcount
