"""Background jobs of the admin (clones, downloads): progress and status, read from the DB.

Only unfinished jobs and those that ended in the last hour are published, at most
MAX_JOBS of them, so the number of series stays small however many jobs ran.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import OperationalError

from common.store import connect
from common.store.jobs import ACTIVE_STATUSES, JOB_STATUSES, Job, public_target, utcnow
from exporter.collectors.base import PREFIX, WordslabCollector, add_state_set

RECENT = timedelta(hours=1)
MAX_JOBS = 100
LABELS = ["job", "kind", "target"]


class JobsCollector(WordslabCollector):
    name = "jobs"

    def __init__(self, settings):
        super().__init__(settings)
        self._engine: Engine | None = None

    def _db(self) -> Engine | None:
        path = self.settings.db_path
        if path is None or not Path(path).exists():
            if self._engine is not None:  # the file went away: forget it
                self._engine.dispose()
                self._engine = None
            return None
        if self._engine is None:
            self._engine = connect(path, readonly=True)
        return self._engine

    def recent_jobs(self) -> list:
        engine = self._db()
        if engine is None:
            return []  # no DB yet: nothing configured, nothing ran
        query = (select(Job)
                 .where(or_(Job.status.in_(ACTIVE_STATUSES), Job.finished_at >= utcnow() - RECENT))
                 .order_by(Job.id.desc()).limit(MAX_JOBS))
        try:
            with engine.connect() as conn:
                return list(conn.execute(query).all())
        except OperationalError as exc:
            if "no such table" in str(exc):  # a DB the admin has not initialised yet
                return []
            raise

    def collect_metrics(self) -> Iterable[Metric]:
        progress = GaugeMetricFamily(PREFIX + "job_progress_ratio",
                                     "Progress of an admin background job, 0 to 1.", labels=LABELS)
        status = GaugeMetricFamily(PREFIX + "job_status",
                                   "State of an admin background job: 1 for its current status, 0 for the others.",
                                   labels=LABELS + ["status"])
        for job in self.recent_jobs():
            labels = [str(job.id), job.kind, public_target(job.target)]
            progress.add_metric(labels, job.progress or 0.0)
            add_state_set(status, labels, JOB_STATUSES, job.status)
        yield progress
        yield status

    def stop(self) -> None:
        super().stop()
        if self._engine is not None:
            self._engine.dispose()
