"""The admin's own watched snapshots of the workspace's projects and the downloaded models.

The same common/ sources the exporter runs (file events, a slow sweep, polling when the
kernel's watches run out), created at the first page that needs them and kept for the
process: list pages and the endpoint form read snapshots instead of scanning per request.
"""
from __future__ import annotations

import threading

from common.background import SourceGroup
from common.config import Settings
from common.sources.model_sources import ModelSources
from common.sources.projects_tracker import ProjectsTracker

# Without file watches, lists are re-read this often (as the exporter does).
POLLING_SECONDS = 30.0
FILES_POLLING_SECONDS = 120.0


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
