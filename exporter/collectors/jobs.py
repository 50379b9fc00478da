"""Background jobs of the admin (clones, downloads): progress and status, from the DB snapshot.

Only unfinished jobs and those that ended in the last hour are published, at most
MAX_JOBS of them, so the number of series stays small however many jobs ran. The rows
come from the shared config-store snapshot (common/sources/config_db.py), never read
on the scrape path.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from common.sources import config_db
from common.store.jobs import ACTIVE_STATUSES, JOB_STATUSES, Job, public_target, utcnow
from exporter.collectors.base import PREFIX, WordslabCollector, add_state_set

RECENT = timedelta(hours=1)
MAX_JOBS = 100
LABELS = ["job", "kind", "target"]


@dataclass(frozen=True)
class JobFacts:
    id: int
    kind: str
    target: str  # credentials already removed
    status: str
    progress: float


def recent_jobs(session: Session) -> tuple[JobFacts, ...]:
    """Unfinished jobs and those finished within RECENT, newest first, at most MAX_JOBS."""
    query = (select(Job)
             .where(or_(Job.status.in_(ACTIVE_STATUSES), Job.finished_at >= utcnow() - RECENT))
             .order_by(Job.id.desc()).limit(MAX_JOBS))
    return tuple(JobFacts(job.id, job.kind, public_target(job.target), job.status, job.progress or 0.0)
                 for job in session.scalars(query))


class JobsCollector(WordslabCollector):
    name = "jobs"
    output_from_sources_only = True

    def __init__(self, settings):
        super().__init__(settings)
        self.config = config_db.shared(settings.db_path)
        self.config.add_read("jobs", recent_jobs, ())
        self.sources = [self.config.source]

    def collect_metrics(self) -> Iterable[Metric]:
        progress = GaugeMetricFamily(PREFIX + "job_progress_ratio",
                                     "Progress of an admin background job, 0 to 1.", labels=LABELS)
        status = GaugeMetricFamily(PREFIX + "job_status",
                                   "State of an admin background job: 1 for its current status, 0 for the others.",
                                   labels=LABELS + ["status"])
        for job in self.config.value("jobs"):
            labels = [str(job.id), job.kind, job.target]
            progress.add_metric(labels, job.progress)
            add_state_set(status, labels, JOB_STATUSES, job.status)
        yield progress
        yield status
