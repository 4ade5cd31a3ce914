"""Queueing work: a Job row in the database (the truth) plus an RQ message naming the job function.

Life of a job: `enqueue` → queued → a worker's `JobRecorder.start` → running (heartbeats) → finished |
failed | cancelled. A worker that dies under a job is noticed by its killed-horse handler or, when the
whole worker or machine is gone, by `portal.job_recovery.recover_lost_jobs` in any other worker; the job is then queued
again (same row, new RQ message) while `attempts < max_attempts`, else failed with the reason.
"""

from __future__ import annotations

import logging

from redis import Redis, RedisError
from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job as RQJob
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from portal.models import DatasetStatus, Job, JobStatus, utcnow
from portal.settings import Settings

log = logging.getLogger(__name__)

CONVERT_QUEUE = "convert"
ANALYSIS_QUEUE = "analysis"
MAIL_QUEUE = "mail"
ALL_QUEUES = (CONVERT_QUEUE, ANALYSIS_QUEUE, MAIL_QUEUE)

# Job functions are named, never imported: the portal does not import workers.
JOB_FUNCTIONS = {
    "convert": ("workers.convert.convert_dataset", CONVERT_QUEUE),
    "segment": ("workers.analyze.analyze_dataset", ANALYSIS_QUEUE),
}
#: The setting holding each kind's time limit; kinds not listed get the analysis limit.
TIMEOUT_SETTINGS = {"convert": "convert_timeout", "segment": "analysis_timeout"}
MAIL_FUNCTION = "workers.notify.mail_job_outcome"
RESULT_TTL_SECONDS = 86400
FAILURE_TTL_SECONDS = 7 * 86400
ACTIVE_STATES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class QueueUnavailable(RuntimeError):
    pass


class JobStateError(ValueError):
    """The job is not in a state that allows the request (answered with 409)."""


def redis_connection(settings: Settings) -> Redis:
    if not settings.redis_url:
        raise QueueUnavailable("no job queue configured: set TILESCOPE_REDIS_URL or start Tilescope with `tilescope up`")
    return Redis.from_url(settings.redis_url)


def rq_job_id(job_id: str, attempt: int) -> str:
    """The RQ id of one attempt of a job: the job id for the first, `<id>-attempt<n>` for later ones."""
    return job_id if attempt <= 1 else f"{job_id}-attempt{attempt}"


def db_job_id(rq_job: RQJob) -> str | None:
    """The Job row an RQ job runs an attempt of (its first argument), or None for other RQ jobs (e.g. mail)."""
    job_id = str(rq_job.args[0]) if rq_job.args else rq_job.id
    return job_id if rq_job.id.split("-attempt")[0] == job_id else None


def timeout_for(settings: Settings, kind: str) -> int:
    return int(getattr(settings, TIMEOUT_SETTINGS.get(kind, "analysis_timeout")))


def timeout_reason(seconds: int | float | None) -> str:
    return f"stopped after {int(seconds or 0)} s (the limit for this kind of job)"


def enqueue(session: Session, settings: Settings, kind: str, *, dataset_id=None, user_id=None, params=None,
            retry_of_id: str | None = None) -> Job:
    """Record a queued Job and send it to its RQ queue; commits so the worker finds the row."""
    function, queue_name = JOB_FUNCTIONS[kind]
    job = Job(kind=kind, queue=queue_name, dataset_id=dataset_id, user_id=user_id, params=params or {},
              message="queued", max_attempts=max(1, settings.job_attempts), timeout_seconds=timeout_for(settings, kind),
              retry_of_id=retry_of_id)
    session.add(job)
    session.commit()
    try:
        send_to_queue(settings, job, function=function)
    except QueueUnavailable as exc:
        job.status, job.error, job.finished_at = JobStatus.FAILED.value, f"could not queue the job: {exc}", utcnow()
        session.commit()
        raise QueueUnavailable(job.error) from exc
    return job


def send_to_queue(settings: Settings, job: Job, *, function: str | None = None, at_front: bool = False) -> None:
    """Send the RQ message for the job's next attempt."""
    function = function or JOB_FUNCTIONS[job.kind][0]
    try:
        Queue(job.queue, connection=redis_connection(settings)).enqueue_call(
            function, args=(job.id,), job_id=rq_job_id(job.id, job.attempts + 1), at_front=at_front,
            timeout=job.timeout_seconds or timeout_for(settings, job.kind),
            result_ttl=RESULT_TTL_SECONDS, failure_ttl=FAILURE_TTL_SECONDS)
    except RedisError as exc:
        raise QueueUnavailable(str(exc)) from exc


def queue_notification(settings: Settings, job_id: str) -> None:
    """Mail a job's outcome from the mail queue, so a slow or broken mail server never fails a job."""
    try:
        Queue(MAIL_QUEUE, connection=redis_connection(settings)).enqueue_call(
            MAIL_FUNCTION, args=(job_id,), job_id=f"mail-{job_id}", result_ttl=RESULT_TTL_SECONDS)
    except (QueueUnavailable, RedisError):
        log.warning("could not queue the mail about job %s", job_id, exc_info=True)


def settle_dataset(session: Session, job: Job, status: str, reason: str) -> None:
    """A dataset waiting on its conversion fails when the conversion fails or is cancelled."""
    dataset = job.dataset if job.dataset_id else None
    if job.kind != "convert" or dataset is None or status not in (JobStatus.FAILED.value, JobStatus.CANCELLED.value):
        return
    if dataset.status in (DatasetStatus.UPLOADED.value, DatasetStatus.CONVERTING.value):
        if status == JobStatus.CANCELLED.value:
            reason = "the conversion was cancelled before it finished"
        dataset.status, dataset.status_reason = DatasetStatus.FAILED.value, reason


def transition(session: Session, job: Job, from_states: tuple[str, ...], *, at_attempt: int | None = None,
               **values) -> bool:
    """Move the job out of `from_states` (at its current attempt) in one conditional UPDATE, settling a
    waiting dataset in the same transaction; False (and nothing changed) when someone else moved it first."""
    result = session.execute(
        update(Job).where(Job.id == job.id, Job.status.in_(from_states),
                          Job.attempts == (job.attempts if at_attempt is None else at_attempt))
        .values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:
        session.rollback()
        return False
    status = values.get("status")
    if status:
        session.refresh(job)
        settle_dataset(session, job, status, values.get("error", ""))
    session.commit()
    session.refresh(job)
    return True


def final_values(status: str, *, error: str = "", message: str | None = None, **extra) -> dict:
    values = dict(status=status, error=error, finished_at=utcnow(), message=message or status, **extra)
    if status == JobStatus.FINISHED.value:
        values["progress"] = 1.0
    return values


def fail_job(session: Session, job_id: str, reason: str) -> bool:
    """Mark an unfinished job failed with `reason`, and its dataset too if that was waiting on it."""
    job = session.get(Job, job_id)
    if job is None or job.is_final:
        return False
    return transition(session, job, ACTIVE_STATES, **final_values(JobStatus.FAILED.value, error=reason, message="failed"))


def cancel_job(session: Session, settings: Settings, job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop (its worker ends it as cancelled)."""
    if job.status == JobStatus.QUEUED.value:
        next_attempt = job.attempts + 1
        if transition(session, job, (JobStatus.QUEUED.value,), **final_values(JobStatus.CANCELLED.value)):
            try:
                Queue(job.queue, connection=redis_connection(settings)).remove(rq_job_id(job.id, next_attempt))
            except (QueueUnavailable, RedisError):
                log.warning("could not remove job %s from its queue; the worker will skip it", job.id)
            return job
        session.refresh(job)  # it started meanwhile
    if job.status != JobStatus.RUNNING.value:
        raise JobStateError(f"job is {job.status}; nothing to cancel")
    session.execute(update(Job).where(Job.id == job.id).values(cancel_requested=True))
    session.commit()
    session.refresh(job)
    try:
        send_stop_job_command(redis_connection(settings), rq_job_id(job.id, job.attempts))
    except (InvalidJobOperation, NoSuchJobError, QueueUnavailable, RedisError) as exc:
        log.info("job %s: no stop command sent (%s); its recorder sees the request", job.id, exc)
    return job


def retry_job(session: Session, settings: Settings, job: Job, user_id: int | None) -> Job:
    """Queue a failed or cancelled job again as a new Job row (retry_of_id = the old one)."""
    if job.status not in (JobStatus.FAILED.value, JobStatus.CANCELLED.value):
        raise JobStateError(f"job is {job.status}; only failed or cancelled jobs can be retried")
    if job.kind not in JOB_FUNCTIONS:
        raise JobStateError(f"jobs of kind {job.kind!r} cannot be run any more")
    again = session.scalar(select(Job).where(Job.retry_of_id == job.id, Job.status.in_(ACTIVE_STATES)))
    if again is not None:
        raise JobStateError(f"job is already being retried as job {again.id}")
    dataset = job.dataset if job.dataset_id else None
    if job.kind == "convert" and dataset is not None:
        if dataset.status == DatasetStatus.READY.value:
            raise JobStateError("the dataset is already converted")
        active = session.scalar(select(Job).where(Job.dataset_id == dataset.id, Job.kind == "convert",
                                                  Job.status.in_(ACTIVE_STATES)))
        if active is not None:
            raise JobStateError(f"a conversion of this dataset is already {active.status}")
        dataset.status, dataset.status_reason = DatasetStatus.UPLOADED.value, ""
    try:
        return enqueue(session, settings, job.kind, dataset_id=job.dataset_id, user_id=user_id,
                       params=dict(job.params or {}), retry_of_id=job.id)
    except QueueUnavailable as exc:
        if job.kind == "convert" and dataset is not None:
            dataset.status, dataset.status_reason = DatasetStatus.FAILED.value, str(exc)
            session.commit()
        raise
