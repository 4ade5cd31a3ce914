"""Queueing work: a Job row in the database (the truth) plus an RQ message naming the job function."""

from __future__ import annotations

from redis import Redis, RedisError
from rq import Queue
from sqlalchemy.orm import Session

from portal.models import Job, JobStatus, utcnow
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

