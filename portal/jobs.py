"""Queueing work: a Job row in the database (the truth) plus an RQ message naming the job function."""

from __future__ import annotations

import socket

import psutil
from redis import Redis, RedisError
from rq import Queue
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import DatasetStatus, Job, JobStatus, utcnow
from portal.settings import Settings

CONVERT_QUEUE = "convert"
ANALYSIS_QUEUE = "analysis"
MAIL_QUEUE = "mail"
ALL_QUEUES = (CONVERT_QUEUE, ANALYSIS_QUEUE, MAIL_QUEUE)

# Job functions are named, never imported: the portal does not import workers.
JOB_FUNCTIONS = {
    "convert": ("workers.convert.convert_dataset", CONVERT_QUEUE),
}


class QueueUnavailable(RuntimeError):
    pass


def redis_connection(settings: Settings) -> Redis:
    if not settings.redis_url:
        raise QueueUnavailable("no job queue configured: set TILESCOPE_REDIS_URL or start Tilescope with `tilescope up`")
    return Redis.from_url(settings.redis_url)


def enqueue(session: Session, settings: Settings, kind: str, *, dataset_id=None, user_id=None, params=None) -> Job:
    """Record a queued Job and send it to its RQ queue; commits so the worker finds the row."""
    function, queue_name = JOB_FUNCTIONS[kind]
    job = Job(kind=kind, queue=queue_name, dataset_id=dataset_id, user_id=user_id, params=params or {}, message="queued")
    session.add(job)
    session.commit()
    try:
        queue = Queue(queue_name, connection=redis_connection(settings))
        queue.enqueue_call(function, args=(job.id,), job_id=job.id, timeout=settings.convert_timeout,
                           result_ttl=86400, failure_ttl=7 * 86400)
    except (QueueUnavailable, RedisError) as exc:
        job.status, job.error, job.finished_at = JobStatus.FAILED.value, f"could not queue the job: {exc}", utcnow()
        session.commit()
        raise QueueUnavailable(job.error) from exc
    return job



def fail_job(session: Session, job_id: str, reason: str) -> bool:
    """Mark an unfinished job failed with `reason`, and its dataset too if that was waiting on it."""
    job = session.get(Job, job_id)
    if job is None or job.status in (JobStatus.FINISHED.value, JobStatus.FAILED.value):
        return False
    job.status, job.error, job.message, job.finished_at = JobStatus.FAILED.value, reason, "failed", utcnow()
    dataset = job.dataset
    if dataset is not None and dataset.status in (DatasetStatus.UPLOADED.value, DatasetStatus.CONVERTING.value):
        dataset.status, dataset.status_reason = DatasetStatus.FAILED.value, reason
    return True


def fail_interrupted_jobs(session: Session, host: str | None = None) -> list[str]:
    """Fail the running jobs of this host whose process is gone (killed worker, stopped portal); returns their ids."""
    host = host or socket.gethostname()
    failed = []
    for job in session.scalars(select(Job).where(Job.status == JobStatus.RUNNING.value, Job.worker.like(f"{host}:%"))):
        pid = job.worker.rpartition(":")[2]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            reason = f"interrupted: the worker process running it ({job.worker}) stopped before it finished"
            fail_job(session, job.id, reason)
            failed.append(job.id)
    session.commit()
    return failed
