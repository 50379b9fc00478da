"""The admin's own watched snapshots of the workspace's projects and the downloaded models.

The same common/ sources the exporter runs (file events, a slow sweep, polling when the
kernel's watches run out), created at the first page that needs them and kept for the
process: list pages and the endpoint form read snapshots instead of scanning per request.

An admin action (a clone, a pull, a download, a delete) changes the disk, then re-reads what
it changed. Between the two a snapshot lags the disk, so the action holds a `Change` over
that span and list pages wait (`settled`) for the changes under way before they read:
a project whose directory exists once a clone ends is listed on the next page view.
"""
from __future__ import annotations

import threading
from typing import Literal

from common.background import SourceGroup
from common.config import Settings
from common.sources.model_sources import ModelSources
from common.sources.projects_tracker import ProjectsTracker

# Without file watches, lists are re-read this often (as the exporter does).
POLLING_SECONDS = 30.0
FILES_POLLING_SECONDS = 120.0


# A list page waits at most this long for the actions re-reading what they changed (one
# project's git status, one model cache's listing); then it shows what it has.
SETTLE_SECONDS = 30.0

Kind = Literal["projects", "models"]


class Change:
    """One action's span from changing the disk to its re-read, for the pages of one kind.

    `begin()` when the disk is about to change (idempotent); the span ends on leaving the
    `with` block, the re-read done or the action failed.
    """

    def __init__(self, pending: "_Pending"):
        self._pending = pending
        self._begun = False

    def begin(self) -> None:
        if not self._begun:
            self._begun = True
            self._pending.add(1)

    def __enter__(self) -> "Change":
        return self

    def __exit__(self, *exc) -> None:
        if self._begun:
            self._begun = False
            self._pending.add(-1)


class _Pending:
    def __init__(self) -> None:
        self._count = 0
        self._settled = threading.Condition()

    def add(self, delta: int) -> None:
        with self._settled:
            self._count += delta
            if self._count == 0:
                self._settled.notify_all()

    def wait(self, timeout: float) -> bool:
        with self._settled:
            return self._settled.wait_for(lambda: self._count == 0, timeout)


def _read_and_started(group: SourceGroup) -> SourceGroup:
    for source in group.sources:
        source.refresh_now()
    group.start()
    return group


class AdminSources:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._projects: ProjectsTracker | None = None
        self._models: ModelSources | None = None
        self._pending: dict[str, _Pending] = {"projects": _Pending(), "models": _Pending()}

    def change(self, kind: Kind) -> Change:
        """A `Change` for an action on `kind`'s items (see the module's docstring)."""
        return Change(self._pending[kind])

    def settled(self, kind: Kind, timeout: float = SETTLE_SECONDS) -> bool:
        """Wait until no action on `kind` is between its change and its re-read; False on timeout."""
        return self._pending[kind].wait(timeout)

    def projects(self) -> ProjectsTracker:
        """The tracker, read once here on first use (that page waits for it), then kept fresh."""
        with self._lock:
            if self._projects is None:
                self._projects = _read_and_started(ProjectsTracker(
                    self.settings.workspace, self.settings.env, sweep_seconds=self.settings.sweep_interval_seconds,
                    polling_seconds=POLLING_SECONDS, files_polling_seconds=FILES_POLLING_SECONDS))
            return self._projects

    def models(self) -> ModelSources:
        with self._lock:
            if self._models is None:
                self._models = _read_and_started(ModelSources(
                    self.settings.env, sweep_seconds=self.settings.sweep_interval_seconds,
                    polling_seconds=POLLING_SECONDS))
            return self._models

    def stop(self) -> None:
        with self._lock:
            for group in (self._projects, self._models):
                if group is not None:
                    group.stop()
