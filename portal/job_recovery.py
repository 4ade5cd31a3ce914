"""Lost jobs: a worker (or its machine) died under a job, or a queue message vanished; queue it again or fail it."""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta

import psutil
from redis import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.jobs import (JOB_FUNCTIONS, QueueUnavailable, fail_job, final_values, queue_notification, redis_connection,
                         rq_job_id, send_to_queue, transition)
from portal.models import Job, JobStatus, utcnow
from portal.settings import Settings

log = logging.getLogger(__name__)


def fail_interrupted_jobs(session: Session, host: str | None = None) -> list[str]:
    """Fail the running jobs of this host whose process is gone (killed worker, stopped portal); returns their ids."""
    host = host or socket.gethostname()
    failed = []
    for job in session.scalars(select(Job).where(Job.status == JobStatus.RUNNING.value, Job.worker.like(f"{host}:%"))).all():
        if local_process_gone(job, host):
            reason = f"interrupted: the worker process running it ({job.worker}) stopped before it finished"
            if fail_job(session, job.id, reason):
                failed.append(job.id)
    session.commit()
    return failed


def local_process_gone(job: Job, host: str) -> bool:
    """Whether the job ran in a process of this host that no longer exists."""
    worker_host, _, pid = (job.worker or "").rpartition(":")
    return worker_host == host and pid.isdigit() and not psutil.pid_exists(int(pid))


def requeue_or_fail(session: Session, settings: Settings, job: Job, reason: str, *, function: str | None = None,
                    from_states: tuple[str, ...] = (JobStatus.RUNNING.value,)) -> str:
    """The worker under `job` died: queue it again (same row) while attempts allow, else fail it with `reason`.

    Returns "requeued", "failed", "cancelled" or "" when another process settled it first. Mails a final outcome.
    """
    started = job.attempts + (1 if job.status == JobStatus.QUEUED.value else 0)  # a queued row died before start()
    attempts = max(started, 1)
    if job.cancel_requested:
        done = transition(session, job, from_states, **final_values(JobStatus.CANCELLED.value, attempts=attempts))
        return "cancelled" if done else ""
    function = (function or _function_of(settings, job)) if attempts < job.max_attempts else None
    if function is None and attempts < job.max_attempts:
        reason = f"{reason}; it cannot be queued again: no job function is known for kind {job.kind!r}"
    if function:
        message = f"queued again after its worker was lost ({reason}); attempt {attempts + 1} of {job.max_attempts}"
        if not transition(session, job, from_states, status=JobStatus.QUEUED.value, attempts=attempts,
                          worker="", heartbeat_at=None, progress=0.0, message=message[:500]):
            return ""
        try:
            send_to_queue(settings, job, function=function, at_front=True)
            return "requeued"
        except Exception as exc:  # the row says queued now: whatever went wrong, it must not stay so without a message
            reason, from_states = f"{reason}; then it could not be queued again: {exc}", (JobStatus.QUEUED.value,)
    tries = f"; it was started {attempts} time{'s' if attempts != 1 else ''}" if job.max_attempts > 1 else ""
    if not transition(session, job, from_states, **final_values(JobStatus.FAILED.value, error=f"{reason}{tries}",
                                                                message="failed", attempts=attempts)):
        return ""
    queue_notification(settings, job.id)
    return "failed"


def _function_of(settings: Settings, job: Job) -> str | None:
    """The dotted job function of a kind, or of the job's last RQ message for kinds unknown here."""
    if job.kind in JOB_FUNCTIONS:
        return JOB_FUNCTIONS[job.kind][0]
    try:
        return RQJob.fetch(rq_job_id(job.id, job.attempts), connection=redis_connection(settings)).func_name
    except (NoSuchJobError, QueueUnavailable, RedisError):
        return None


def recover_lost_jobs(session: Session, settings: Settings, *, host: str | None = None,
                      now: datetime | None = None) -> list[str]:
    """Queue again (or fail) running jobs whose worker is gone: silent for `job_stale_seconds`, or a process
    of this host that no longer exists. Safe to run in every worker at once; returns the ids it settled."""
    host, now = host or socket.gethostname(), now or utcnow()
    stale_after = timedelta(seconds=settings.job_stale_seconds)
    settled = []
    for job in session.scalars(select(Job).where(Job.status == JobStatus.RUNNING.value)).all():
        last_sign = job.heartbeat_at or job.started_at or job.created_at
        if local_process_gone(job, host):
            reason = f"the worker process running it ({job.worker}) died"
        elif now - last_sign > stale_after:
            silent = int((now - last_sign).total_seconds())
            reason = (f"the worker running it ({job.worker or 'unknown'}) died or its machine is gone: "
                      f"no heartbeat for {silent} s")
        else:
            continue
        outcome = requeue_or_fail(session, settings, job, reason)
        if outcome:
            log.warning("job %s: %s; %s", job.id, reason, outcome)
            settled.append(job.id)
    return settled + recover_orphaned_messages(session, settings, now=now)


#: RQ states in which a queued row's message is still on its way to a worker.
_MESSAGE_ALIVE = frozenset({"queued", "started", "deferred", "scheduled"})


def recover_orphaned_messages(session: Session, settings: Settings, *, now: datetime | None = None) -> list[str]:
    """Queued rows whose RQ message is gone or dead (a worker died between taking it and starting it, or Redis
    lost it): queue them again, or fail them once their attempts are used up."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.job_stale_seconds)
    waiting = session.scalars(select(Job).where(Job.status == JobStatus.QUEUED.value, Job.created_at < cutoff)).all()
    if not waiting:
        return []
    try:
        connection = redis_connection(settings)
        states = {}
        for job in waiting:
            try:
                states[job.id] = RQJob.fetch(rq_job_id(job.id, job.attempts + 1), connection=connection).get_status()
            except NoSuchJobError:
                states[job.id] = None
    except (QueueUnavailable, RedisError):
        return []  # nothing can be said about messages while Redis is away
    settled = []
    for job in waiting:
        state = states[job.id]
        if state is not None and getattr(state, "value", state) in _MESSAGE_ALIVE:
            continue
        reason = f"its queue message was lost ({'missing' if state is None else getattr(state, 'value', state)} in Redis)"
        outcome = requeue_or_fail(session, settings, job, reason, from_states=(JobStatus.QUEUED.value,))
        if outcome:
            log.warning("job %s: %s; %s", job.id, reason, outcome)
            settled.append(job.id)
    return settled
