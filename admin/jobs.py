"""Long work (clone, model download) runs here as a background job, never in a request."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from exporter.store.jobs import Job, utcnow

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """Raised by job work with a message meant for the user."""


class Progress:
    """Handed to job work to report how far it got; writes throttled to the jobs table."""

    def __init__(self, sessions: sessionmaker, job_id: int):
        self._sessions = sessions
        self.job_id = job_id

    def update(self, ratio: float | None = None, *, bytes_done: int | None = None,
               bytes_total: int | None = None, message: str | None = None) -> None:
        if ratio is None and bytes_done is not None and bytes_total:
            ratio = bytes_done / bytes_total
        with self._sessions.begin() as session:
            job = session.get(Job, self.job_id)
            if ratio is not None:
                job.progress = max(0.0, min(1.0, float(ratio)))
            if bytes_done is not None:
                job.bytes_done = bytes_done
            if bytes_total is not None:
                job.bytes_total = bytes_total
            if message is not None:
                job.message = message


JobWork = Callable[[Progress], str | None]


class JobRunner:
    def __init__(self, sessions: sessionmaker, workers: int = 2):
        self._sessions = sessions
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._lock = threading.Lock()

    def mark_interrupted(self) -> int:
        """Jobs left queued/running by a previous admin process failed: say so, keep them."""
        with self._sessions.begin() as session:
            stale = session.scalars(select(Job).where(Job.status.in_(("queued", "running")))).all()
            for job in stale:
                job.status = "failed"
                job.message = "interrupted: the admin stopped before the job finished"
                job.finished_at = utcnow()
            return len(stale)

    def submit(self, kind: str, target: str, work: JobWork) -> int:
        with self._sessions.begin() as session:
            job = Job(kind=kind, target=target, status="queued", progress=0.0, message="queued")
            session.add(job)
            session.flush()
            job_id = job.id
        self._pool.submit(self._run, job_id, work)
        return job_id

    def _run(self, job_id: int, work: JobWork) -> None:
        with self._sessions.begin() as session:
            job = session.get(Job, job_id)
            job.status, job.started_at, job.message = "running", utcnow(), "running"
        try:
            message = work(Progress(self._sessions, job_id))
        except Exception as exc:
            if not isinstance(exc, JobFailed):
                log.exception("job %s failed", job_id)
            self._finish(job_id, "failed", str(exc) or type(exc).__name__)
        else:
            self._finish(job_id, "done", message or "done", progress=1.0)

    def _finish(self, job_id: int, status: str, message: str, progress: float | None = None) -> None:
        with self._sessions.begin() as session:
            job = session.get(Job, job_id)
            job.status, job.message, job.finished_at = status, message, utcnow()
            if progress is not None:
                job.progress = progress

    def wait_idle(self, timeout: float = 60.0) -> None:
        """For tests and shutdown: wait for submitted work to end."""
        self._pool.shutdown(wait=True)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="job")
