"""Where a job stands: its position in the queue and an estimate of when it will be done."""

from __future__ import annotations

from datetime import datetime

from redis import RedisError
from rq import Queue, Worker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.jobs import QueueUnavailable, redis_connection
from portal.models import Job, JobStatus, utcnow
from portal.settings import Settings

#: How many finished jobs of a kind the queued-job ETA averages over.
ETA_SAMPLE = 20


def queue_positions(session: Session) -> dict[str, int]:
    """Position (1 = next) of every queued job within its queue, oldest first."""
    rows = session.execute(select(Job.id, Job.queue).where(Job.status == JobStatus.QUEUED.value)
                           .order_by(Job.created_at, Job.id))
    positions, counts = {}, {}
    for job_id, queue in rows:
        counts[queue] = counts.get(queue, 0) + 1
        positions[job_id] = counts[queue]
    return positions


def queue_position(session: Session, job: Job) -> int | None:
    """1 + the queued jobs of the same queue created before this one; None when it is not queued."""
    if job.status != JobStatus.QUEUED.value:
        return None
    earlier = (Job.created_at < job.created_at) | ((Job.created_at == job.created_at) & (Job.id < job.id))
    return 1 + session.scalar(select(func.count()).select_from(Job).where(
        Job.queue == job.queue, Job.status == JobStatus.QUEUED.value, earlier))


def mean_wall_seconds(session: Session, kind: str) -> float | None:
    """Mean run time of the last ETA_SAMPLE finished jobs of a kind."""
    recent = (select(Job.wall_seconds).where(Job.kind == kind, Job.status == JobStatus.FINISHED.value,
                                             Job.wall_seconds.is_not(None))
              .order_by(Job.finished_at.desc()).limit(ETA_SAMPLE).subquery())
    return session.scalar(select(func.avg(recent.c.wall_seconds)))


def live_workers(settings: Settings, queue_name: str) -> int | None:
    """Workers listening on a queue, as RQ knows them; None when Redis cannot be asked."""
    try:
        connection = redis_connection(settings)
        return Worker.count(connection=connection, queue=Queue(queue_name, connection=connection))
    except (QueueUnavailable, RedisError):
        return None


def estimate_eta(session: Session, job: Job, *, workers: int | None = None, position: int | None = None,
                 mean_wall: float | None = None, now: datetime | None = None) -> float | None:
    """Seconds until the job is done: from its progress when running; from its place in the queue, the
    recent run time of its kind and the live workers when queued; None when unknown."""
    now = now or utcnow()
    if job.status == JobStatus.RUNNING.value:
        if job.started_at is None or job.progress <= 0.02:
            return None
        elapsed = (now - job.started_at).total_seconds()
        return max(0.0, elapsed * (1 - job.progress) / job.progress)
    if job.status != JobStatus.QUEUED.value or not workers:
        return None
    position = position or queue_position(session, job)
    mean_wall = mean_wall if mean_wall is not None else mean_wall_seconds(session, job.kind)
    if position is None or mean_wall is None:
        return None
    return position * mean_wall / workers
