"""Long work (clone, model download) runs here as a background job, never in a request.

    job_id = ctx.jobs.submit("clone", url, work)    # returns at once

    def work(progress: Progress) -> str | None:
        progress.update(bytes_done=n, bytes_total=total, message="receiving objects")
        if bad:
            raise JobFailed("remote refused: ...")   # shown to the user as is
        return "cloned into ..."                      # final message of a done job

Progress writes are throttled (SQLite is shared with the exporter): the first update is
written at once, later ones at most every `Progress.min_interval` seconds, and the latest
values are always written when the job ends.

Lanes: heavy work (clones, downloads) shares `workers` threads; `lane="control"` jobs (endpoint
start/stop/load/unload: a signal, or a wait on a server to answer) get threads of their own,
so Stop never queues behind a start that waits for 15 minutes, nor behind a clone.

Cancel: `runner.cancel(job_id)` ends a queued job at once and asks a running one to stop:
`progress.update()` raises JobCancelled at the next report, work that waits calls
`progress.sleep(s)` / `progress.check()`, and work that runs a subprocess registers
`progress.on_cancel(kill)`. The job ends "cancelled"; work that cannot be interrupted (one
blocking call) ends "done (the cancel came too late)".
"""
from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Callable, Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from common.store.jobs import ACTIVE_STATUSES, Job, public_target, utcnow

log = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = "interrupted: the admin stopped before the job finished"
CANCELLED_MESSAGE = "cancelled by the user"
LANES = ("work", "control")
CONTROL_WORKERS = 16  # control jobs mostly wait; each gets a thread up to this many


def active_jobs(session: Session, kinds: Iterable[str] | None = None) -> list[Job]:
    """Queued and running jobs, oldest first; only those of `kinds` when given."""
    query = select(Job).where(Job.status.in_(ACTIVE_STATUSES)).order_by(Job.id)
    if kinds is not None:
        query = query.where(Job.kind.in_(kinds))
    return list(session.scalars(query))


class JobFailed(Exception):
    """Raised by job work with a message meant for the user."""


class JobCancelled(Exception):
    """Raised inside job work (by Progress.check/sleep) once the user cancelled the job."""


class CancelToken:
    """Set once by `JobRunner.cancel`; runs the callbacks work registered (kill a subprocess...)."""

    def __init__(self):
        self.event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self.event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def cancel(self) -> None:
        with self._lock:
            if self.event.is_set():
                return
            self.event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a kill racing the end of the process: nothing to undo
                log.exception("cancel callback failed")


class Progress:
    """Handed to job work to report how far it got; writes throttled to the jobs table."""

    min_interval = 0.5  # seconds between two writes: a few per second at most

    def __init__(self, sessions: sessionmaker, job_id: int,
                 clock: Callable[[], float] = time.monotonic, cancel: CancelToken | None = None):
        self._sessions = sessions
        self._clock = clock
        self._last_write: float | None = None
        self._pending: dict = {}
        self._cancel = cancel or CancelToken()
        self.job_id = job_id

    @property
    def cancelled(self) -> bool:
        return self._cancel.event.is_set()

    def check(self) -> None:
        """Raise JobCancelled once the user cancelled the job."""
        if self.cancelled:
            raise JobCancelled()

    def sleep(self, seconds: float) -> None:
        """Wait, cut short by a cancel (then JobCancelled)."""
        if self._cancel.event.wait(seconds):
            raise JobCancelled()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the job is cancelled (at once if it already is)."""
        self._cancel.on_cancel(callback)

    def update(self, ratio: float | None = None, *, bytes_done: int | None = None,
               bytes_total: int | None = None, message: str | None = None) -> None:
        """Report progress; raises JobCancelled once the job is cancelled (every job that reports
        progress stops at its next report: downloads, pulls, clones)."""
        self.check()
        if ratio is None and bytes_done is not None and bytes_total:
            ratio = bytes_done / bytes_total
        if ratio is not None and not math.isnan(ratio):
            self._pending["progress"] = max(0.0, min(1.0, float(ratio)))
        if bytes_done is not None:
            self._pending["bytes_done"] = int(bytes_done)
        if bytes_total is not None:
            self._pending["bytes_total"] = int(bytes_total)
        if message is not None:
            self._pending["message"] = public_target(message)
        now = self._clock()
        if self._last_write is None or now - self._last_write >= self.min_interval:
            self.flush()
            self._last_write = now

    def flush(self) -> None:
        """Write what was reported since the last write."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        with self._sessions.begin() as session:
            job = session.get(Job, self.job_id)
            for name, value in pending.items():
                setattr(job, name, value)


JobWork = Callable[[Progress], str | None]


class JobRunner:
    def __init__(self, sessions: sessionmaker, workers: int = 2):
        self._sessions = sessions
        self._workers = workers
        self._pools = {"work": ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job"),
                       "control": ThreadPoolExecutor(max_workers=CONTROL_WORKERS, thread_name_prefix="job-control")}
        self._futures: set[Future] = set()
        self._cancels: dict[int, tuple[CancelToken, Future]] = {}
        self._lock = threading.Lock()

    def mark_interrupted(self) -> int:
        """Jobs left queued/running by a previous admin process failed: say so, keep them."""
        with self._sessions.begin() as session:
            stale = session.scalars(select(Job).where(Job.status.in_(ACTIVE_STATUSES))).all()
            for job in stale:
                job.status = "failed"
                job.message = INTERRUPTED_MESSAGE
                job.finished_at = utcnow()
            return len(stale)

    def submit(self, kind: str, target: str, work: JobWork, lane: str = "work") -> int:
        """Record a queued job and run `work(progress)` in a thread of `lane`; returns the job id."""
        pool = self._pools[lane]
        with self._sessions.begin() as session:
            job = Job(kind=kind, target=public_target(target), status="queued", progress=0.0,
                      message="queued", created_at=utcnow())
            session.add(job)
            session.flush()
            job_id = job.id
        with self._lock:
            token = CancelToken()
            future = pool.submit(self._run, job_id, token, work)
            self._cancels[job_id] = (token, future)
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return job_id

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._futures.discard(future)

    def cancel(self, job_id: int) -> str:
        """Cancel a queued or running job of this process; returns a message for the user.

        Raises JobFailed when there is nothing to cancel (unknown or finished job).
        """
        with self._lock:
            token, future = self._cancels.get(job_id, (None, None))
        if token is None:
            raise JobFailed(f"job {job_id} is not queued or running: nothing to cancel")
        if future.cancel():  # still queued: it never runs
            token.cancel()
            with self._lock:
                self._cancels.pop(job_id, None)
            self._finish(job_id, Progress(self._sessions, job_id), "cancelled", CANCELLED_MESSAGE)
            return f"job {job_id}: cancelled"
        with self._sessions.begin() as session:  # before the cancel: the job's end message wins
            session.execute(update(Job).where(Job.id == job_id, Job.status == "running")
                            .values(message="cancelling").execution_options(synchronize_session=False))
        token.cancel()
        return f"job {job_id}: cancel requested"

    def _run(self, job_id: int, token: CancelToken, work: JobWork) -> None:
        progress = Progress(self._sessions, job_id, cancel=token)
        try:
            if token.event.is_set():  # cancelled while queued: never starts
                raise JobCancelled()
            with self._sessions.begin() as session:
                job = session.get(Job, job_id)
                job.status, job.started_at, job.message = "running", utcnow(), "running"
                log.info("job %s started: %s %s", job_id, job.kind, job.target)
            message = work(progress)
        except JobCancelled:
            self._finish(job_id, progress, "cancelled", CANCELLED_MESSAGE)
        except JobFailed as exc:
            self._finish(job_id, progress, "failed", str(exc) or "failed")
        except Exception as exc:  # a bug or an unexpected error: keep the admin alive, tell the user
            log.exception("job %s failed", job_id)
            self._finish(job_id, progress, "failed", f"unexpected error: {type(exc).__name__}: {exc}")
        else:
            late = " (the cancel came too late)" if progress.cancelled else ""
            self._finish(job_id, progress, "done", (message or "done") + late, ratio=1.0)
        finally:
            with self._lock:
                self._cancels.pop(job_id, None)

    def _finish(self, job_id: int, progress: Progress, status: str, message: str,
                ratio: float | None = None) -> None:
        progress.flush()
        with self._sessions.begin() as session:
            job = session.get(Job, job_id)
            job.status, job.message, job.finished_at = status, public_target(message), utcnow()
            if ratio is not None:
                job.progress = ratio
        log.info("job %s %s: %s", job_id, status, public_target(message))

    def active_count(self) -> int:
        with self._lock:
            return len(self._futures)

    def wait_idle(self, timeout: float | None = 60.0) -> bool:
        """For tests and shutdown: wait for submitted work to end. True when idle."""
        with self._lock:
            pending = list(self._futures)
        _, not_done = wait_futures(pending, timeout=timeout)
        return not not_done

    def shutdown(self, wait: bool = True) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=wait, cancel_futures=not wait)
