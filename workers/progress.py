"""Job bookkeeping from inside a running job: start, heartbeat, throttled progress, cancel requests, end with resource use.

A job function makes one `JobRecorder(settings.sqlalchemy_url, job_id, settings=settings)`, calls `start()`,
passes the recorder as its progress callback, and ends with `finish()` or `fail(error)`.

Cancelling: the recorder's progress callback raises `JobCancelled` once someone asked to cancel the job
(the request is read at most every CANCEL_CHECK_SECONDS); code that runs long without reporting progress
can poll `recorder.cancelled()` itself. `JobCancelled` and `JobStopped` derive from BaseException, so an
`except Exception` in the job does not swallow them. Usually the worker stops a cancelled job sooner, by
killing its process; either way the row ends `cancelled`, never `failed`.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import sys
import threading
import time
import traceback as tracebacks

from rq.timeouts import JobTimeoutException
from sqlalchemy import select, update

from portal.db import session_scope
from portal.jobs import queue_notification, settle_dataset, timeout_reason
from portal.models import Job, JobStatus, utcnow
from portal.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 1.0
CANCEL_CHECK_SECONDS = 2.0


class JobStopped(BaseException):
    """The job must stop now: it is no longer this process's to run (cancelled, settled, or running elsewhere)."""


class JobCancelled(JobStopped):
    """Someone asked to cancel the job."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def cpu_seconds() -> float:
    """CPU time of this process and of its waited-for children (e.g. a pool of analysis processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_bytes() -> int:
    """Largest resident set of this process or of one of its children (ru_maxrss is in KiB on Linux)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return max(own.ru_maxrss, children.ru_maxrss) * 1024


class JobRecorder:
    """Writes one attempt of a job to its row; progress writes are throttled to one per second."""

    def __init__(self, database_url: str, job_id: str, *, settings: Settings | None = None,
                 heartbeat_seconds: float | None = None):
        self.database_url = database_url
        self.job_id = job_id
        self.settings = settings
        self.heartbeat_seconds = heartbeat_seconds
        self.attempt: int | None = None
        self.timeout_seconds: int | None = None
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False
        self._started = self._cpu_at_start = 0.0
        self._stop_beating = threading.Event()

    def _settings(self) -> Settings:
        if self.settings is None:
            self.settings = Settings.from_env()
        return self.settings

    def _this_attempt(self):
        return (Job.id == self.job_id, Job.status == JobStatus.RUNNING.value, Job.attempts == self.attempt)

    def start(self, message: str = "started") -> None:
        """Claim the queued job for this process (one more attempt) and start its heartbeat."""
        self._started, self._cpu_at_start = time.monotonic(), cpu_seconds()
        with session_scope(self.database_url) as session:
            now = utcnow()
            claimed = session.execute(
                update(Job).where(Job.id == self.job_id, Job.status == JobStatus.QUEUED.value)
                .values(status=JobStatus.RUNNING.value, attempts=Job.attempts + 1, started_at=now, heartbeat_at=now,
                        finished_at=None, worker=worker_name(), host=socket.gethostname(), message=message,
                        progress=0.0, error="", traceback="")
                .execution_options(synchronize_session=False)).rowcount
            job = session.get(Job, self.job_id)
            if job is None:
                raise LookupError(f"no job {self.job_id}")
            if not claimed:
                if job.status == JobStatus.CANCELLED.value:
                    raise JobCancelled(f"job {self.job_id} was cancelled before it started")
                raise JobStopped(f"job {self.job_id} is {job.status}, not queued; not starting it again")
            self.attempt, self.timeout_seconds = job.attempts, job.timeout_seconds
        interval = self.heartbeat_seconds or self._settings().job_heartbeat_seconds
        threading.Thread(target=self._beat, args=(interval,), name=f"heartbeat-{self.job_id}", daemon=True).start()

    def _beat(self, interval: float) -> None:
        while not self._stop_beating.wait(interval):
            try:
                with session_scope(self.database_url) as session:
                    session.execute(update(Job).where(*self._this_attempt()).values(heartbeat_at=utcnow())
                                    .execution_options(synchronize_session=False))
            except Exception:  # a database hiccup must not end the job; a long silence makes it look lost
                log.warning("job %s: heartbeat failed", self.job_id, exc_info=True)

    def progress(self, fraction: float, message: str = "") -> None:
        """Record progress (at most once a second); raises JobCancelled when the job was cancelled."""
        now = time.monotonic()
        if now - self._last_write >= PROGRESS_INTERVAL_SECONDS or fraction >= 1.0:
            self._last_write = now
            with session_scope(self.database_url) as session:
                written = session.execute(
                    update(Job).where(*self._this_attempt())
                    .values(progress=max(0.0, min(1.0, float(fraction))), message=message[:500], heartbeat_at=utcnow())
                    .execution_options(synchronize_session=False)).rowcount
            if not written:
                raise JobStopped(f"job {self.job_id} is no longer running here")
        if self.cancelled():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def __call__(self, fraction: float, message: str = "") -> None:
        self.progress(fraction, message)

    def cancelled(self) -> bool:
        """Whether someone asked to cancel the job; reads the database at most every CANCEL_CHECK_SECONDS."""
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check >= CANCEL_CHECK_SECONDS:
            self._last_cancel_check = now
            with session_scope(self.database_url) as session:
                self._cancelled = bool(session.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))
        return self._cancelled

    def finish(self, message: str = "done", *, notify: bool = True) -> None:
        self._end(JobStatus.FINISHED.value, message, "", "", notify)

    def fail(self, error: str, traceback: str = "", *, notify: bool = True) -> str:
        """End the job failed with a readable `error` (the traceback is kept for admins); returns the reason
        recorded. A time limit hit or a cancel request in flight wins over `error`: the job then ends
        "stopped after N s …", or cancelled."""
        in_flight = sys.exc_info()[1]
        if isinstance(in_flight, JobTimeoutException):
            error = timeout_reason(self.timeout_seconds)
        traceback = traceback or (tracebacks.format_exc() if in_flight is not None else "")
        self._last_cancel_check = 0.0
        if isinstance(in_flight, JobCancelled) or self.cancelled():
            self._end(JobStatus.CANCELLED.value, "cancelled", "", "", False)
            return "cancelled"
        self._end(JobStatus.FAILED.value, "failed", error, traceback, notify)
        return error

    def _end(self, status: str, message: str, error: str, traceback: str, notify: bool) -> None:
        self._stop_beating.set()
        with session_scope(self.database_url) as session:
            job = session.get(Job, self.job_id, with_for_update=True)
            if job is None or job.status != JobStatus.RUNNING.value or job.attempts != self.attempt:
                log.warning("job %s: not recording %s; the row moved on (%s)", self.job_id, status,
                            job.status if job else "gone")
                return
            job.status, job.message, job.error, job.traceback = status, message[:500], error, traceback
            job.finished_at, job.host = utcnow(), socket.gethostname()
            job.wall_seconds = time.monotonic() - self._started
            job.cpu_seconds = max(0.0, cpu_seconds() - self._cpu_at_start)
            job.peak_rss_bytes = peak_rss_bytes()
            if status == JobStatus.FINISHED.value:
                job.progress = 1.0
            settle_dataset(session, job, status, error)
        if notify and status in (JobStatus.FINISHED.value, JobStatus.FAILED.value):
            queue_notification(self._settings(), self.job_id)
