"""Job bookkeeping in the database: start, throttled progress, finish and fail."""

from __future__ import annotations

import os
import socket
import time

from portal.db import session_scope
from portal.models import Job, JobStatus, utcnow

PROGRESS_INTERVAL_SECONDS = 1.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobRecorder:
    """Writes a job's state to its row; progress writes are throttled to one per second."""

    def __init__(self, database_url: str, job_id: str):
        self.database_url = database_url
        self.job_id = job_id
        self._last_write = 0.0

    def start(self, message: str = "started") -> None:
        with session_scope(self.database_url) as session:
            job = session.get(Job, self.job_id)
            job.status, job.started_at, job.worker, job.message = JobStatus.RUNNING.value, utcnow(), worker_name(), message
            job.progress, job.error = 0.0, ""

    def progress(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if now - self._last_write < PROGRESS_INTERVAL_SECONDS and fraction < 1.0:
            return
        self._last_write = now
        with session_scope(self.database_url) as session:
            job = session.get(Job, self.job_id)
            job.progress, job.message = max(0.0, min(1.0, float(fraction))), message[:500]

    def __call__(self, fraction: float, message: str = "") -> None:
        self.progress(fraction, message)

    def finish(self, message: str = "done") -> None:
        self._end(JobStatus.FINISHED, message, "")

    def fail(self, error: str) -> None:
        self._end(JobStatus.FAILED, "failed", error)

    def _end(self, status: JobStatus, message: str, error: str) -> None:
        with session_scope(self.database_url) as session:
            job = session.get(Job, self.job_id)
            job.status, job.message, job.error, job.finished_at = status.value, message, error, utcnow()
            if status is JobStatus.FINISHED:
                job.progress = 1.0
