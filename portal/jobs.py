"""Queueing work: a Job row in the database (the truth) plus an RQ message naming the job function.

Life of a job: `enqueue` → queued → a worker's `JobRecorder.start` → running (heartbeats) → finished |
failed | cancelled. A worker that dies under a job is noticed by its killed-horse handler or, when the
whole worker or machine is gone, by `recover_lost_jobs` in any other worker; the job is then queued
again (same row, new RQ message) while `attempts < max_attempts`, else failed with the reason.
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta

import psutil
from redis import Redis, RedisError
from rq import Queue, Worker
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job as RQJob
from sqlalchemy import func, select, update
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
#: How many finished jobs of a kind the queued-job ETA averages over.
ETA_SAMPLE = 20
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
