"""The worker entry point (`tilescope worker`): an RQ worker that keeps the Job rows true and finds lost jobs.

Besides running jobs, every worker, idle or busy, looks for jobs lost by dead workers every
`check_interval(settings)` seconds (`portal.job_recovery.recover_lost_jobs`); it records jobs that raised, timed
out or were stopped, when the job function could not; its work-horse dying re-queues the job while
attempts allow; and at start and hourly it tidies up (`workers.housekeeping`).
"""

from __future__ import annotations

import importlib
import logging
import socket
import time
import traceback

from rq import Queue, Worker
from rq.timeouts import JobTimeoutException

from portal.db import dispose_engines, session_scope
from portal.job_recovery import recover_lost_jobs, requeue_or_fail
from portal.jobs import (ALL_QUEUES, JOB_FUNCTIONS, MAIL_FUNCTION, db_job_id, final_values, queue_notification,
                         redis_connection, timeout_reason, transition)
from portal.models import Job, JobStatus, utcnow
from portal.settings import Settings
from workers.housekeeping import HOUSEKEEPING_SECONDS, tidy
from workers.progress import JobCancelled, JobStopped, cpu_seconds, peak_rss_bytes, worker_name

log = logging.getLogger(__name__)


def check_interval(settings: Settings) -> int:
    """Seconds between two looks for lost jobs: a lost job is noticed within job_stale_seconds plus this."""
    return max(1, min(settings.job_heartbeat_seconds, settings.job_stale_seconds // 2))


class TilescopeWorker(Worker):
    """An RQ worker whose hooks record in the database what happened to a job outside its own code."""

    def __init__(self, queues, *, settings: Settings, **kwargs):
        interval = check_interval(settings)
        super().__init__(queues, worker_ttl=interval + 15, job_monitoring_interval=interval,
                         maintenance_interval=interval, work_horse_killed_handler=self.on_work_horse_killed,
                         exception_handlers=[self.on_job_exception], **kwargs)
        self.settings = settings
        self.check_seconds = interval
        self._last_check = 0.0
        self._last_tidy = 0.0
        self._horse_worker = ""
        self._horse_rusage = None

    # -- lost jobs: at start, while idle (maintenance) and while busy (horse monitoring) -------------
    def find_lost_jobs(self) -> list[str]:
        self._last_check = time.monotonic()
        try:
            with session_scope(self.settings.sqlalchemy_url) as session:
                return recover_lost_jobs(session, self.settings)
        except Exception:  # a database hiccup must not stop the worker
            log.warning("looking for lost jobs failed", exc_info=True)
            return []

    def run_maintenance_tasks(self):
        super().run_maintenance_tasks()
        self.find_lost_jobs()
        if time.monotonic() - self._last_tidy >= HOUSEKEEPING_SECONDS:
            self.tidy()

    def tidy(self) -> dict[str, int]:
        """Abandoned uploads, left-over scratch, the local cache over budget (workers.housekeeping)."""
        self._last_tidy = time.monotonic()
        return tidy(self.settings)

    def maintain_heartbeats(self, job, execution):
        super().maintain_heartbeats(job, execution)
        if time.monotonic() - self._last_check >= self.check_seconds:
            self.find_lost_jobs()

    # -- the work-horse ----------------------------------------------------------------------------
    def fork_work_horse(self, job, queue):
        dispose_engines()  # the horse must not share this process's pooled database connections
        self._horse_rusage = None
        super().fork_work_horse(job, queue)
        self._horse_worker = f"{socket.gethostname()}:{self._horse_pid}"

    def wait_for_horse(self):
        pid, status, rusage = super().wait_for_horse()
        if rusage is not None:
            self._horse_rusage = rusage
        return pid, status, rusage

    def execute_job(self, job, queue):
        super().execute_job(job, queue)
        self.settle_after_horse(job)

    def settle_after_horse(self, rq_job) -> None:
        """The horse is gone but the row still says it runs there: it was stopped on a cancel request, or the job
        function ended without recording an outcome."""
        with session_scope(self.settings.sqlalchemy_url) as session:
            job_id = db_job_id(rq_job)
            job = session.get(Job, job_id) if job_id else None
            if job is None or job.status != JobStatus.RUNNING.value or job.worker != self._horse_worker:
                return
            if job.cancel_requested:
                transition(session, job, (JobStatus.RUNNING.value,),
                           **final_values(JobStatus.CANCELLED.value, **self.horse_resources(job)))
                return
            transition(session, job, (JobStatus.RUNNING.value,), **final_values(
                JobStatus.FAILED.value, message="failed", **self.horse_resources(job),
                error="the job ended without recording its outcome (a bug in its job function)"))
        queue_notification(self.settings, job.id)

    def horse_resources(self, job: Job, rusage=None) -> dict:
        rusage = rusage or self._horse_rusage
        used = {"wall_seconds": (utcnow() - job.started_at).total_seconds() if job.started_at else None}
        if rusage is not None:
            used.update(cpu_seconds=rusage.ru_utime + rusage.ru_stime, peak_rss_bytes=rusage.ru_maxrss * 1024)
        return used

    def on_work_horse_killed(self, rq_job, _pid, status, rusage) -> None:
        """The process running a job died (out of memory, SIGKILL, hard time limit): retry it, or fail it with a reason."""
        with session_scope(self.settings.sqlalchemy_url) as session:
            job_id = db_job_id(rq_job)
            job = session.get(Job, job_id) if job_id else None
            if job is None or job.is_final:
                return
            active = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
            elapsed = (utcnow() - job.started_at).total_seconds() if job.started_at else 0
            if job.timeout_seconds and elapsed >= job.timeout_seconds and not job.cancel_requested:
                if transition(session, job, active, **final_values(
                        JobStatus.FAILED.value, message="failed", error=timeout_reason(job.timeout_seconds),
                        **self.horse_resources(job, rusage))):
                    queue_notification(self.settings, job.id)
                return
            reason = (f"the process running this job died unexpectedly (wait status {status}); "
                      "it may have run out of memory")
            outcome = requeue_or_fail(session, self.settings, job, reason, function=rq_job.func_name, from_states=active)
            if outcome in ("failed", "cancelled"):
                session.execute(Job.__table__.update().where(Job.id == job.id).values(**self.horse_resources(job, rusage)))
            log.warning("job %s: %s; %s", job.id, reason, outcome or "already settled")

    def on_job_exception(self, rq_job, exc_type, exc_value, tb) -> bool:
        """In the horse, for an exception the job function let escape: record it unless the job already ended."""
        try:
            with session_scope(self.settings.sqlalchemy_url) as session:
                job_id = db_job_id(rq_job)
                job = session.get(Job, job_id) if job_id else None
                if job is None or job.status != JobStatus.RUNNING.value or job.worker != worker_name():
                    return True
                if isinstance(exc_value, JobCancelled) or (job.cancel_requested and isinstance(exc_value, JobStopped)):
                    values = final_values(JobStatus.CANCELLED.value)
                elif isinstance(exc_value, JobStopped):
                    return True
                else:
                    error = (timeout_reason(job.timeout_seconds or rq_job.timeout)
                             if isinstance(exc_value, JobTimeoutException) else f"{exc_type.__name__}: {exc_value}")
                    values = final_values(JobStatus.FAILED.value, message="failed", error=error,
                                          traceback="".join(traceback.format_exception(exc_type, exc_value, tb)))
                used = dict(wall_seconds=(utcnow() - job.started_at).total_seconds() if job.started_at else None,
                            cpu_seconds=cpu_seconds(), peak_rss_bytes=peak_rss_bytes())  # this process is the horse
                if transition(session, job, (JobStatus.RUNNING.value,), **values, **used) \
                        and values["status"] == JobStatus.FAILED.value:
                    queue_notification(self.settings, job.id)
        except Exception:
            log.exception("could not record the failure of job %s", rq_job.id)
        return True


def run_worker(settings: Settings, queues: tuple[str, ...] = ALL_QUEUES, *, burst: bool = False, name: str | None = None) -> bool:
    """Work on `queues` (in priority order) until stopped, or until they are empty with `burst`."""
    connection = redis_connection(settings)
    worker = TilescopeWorker([Queue(q, connection=connection) for q in queues], settings=settings,
                             connection=connection, name=name)
    for job_id in worker.find_lost_jobs():
        log.warning("job %s was left running by a worker that is gone; queued again or failed", job_id)
    worker.tidy()
    rq_log = logging.getLogger("rq.worker")
    rq_log.setLevel(settings.log_level.upper())
    rq_log.addFilter(quiet_maintenance)
    preload_job_modules()
    return worker.work(burst=burst, logging_level=settings.log_level.upper())


#: RQ's routine maintenance messages, logged every check interval: noise in a worker's log unless debugging.
_ROUTINE = ("cleaning registries", "cleaning group registries", "subscribing to channel")


def quiet_maintenance(record: logging.LogRecord) -> bool:
    """A logging filter: RQ's routine maintenance lines only at DEBUG."""
    return record.levelno != logging.INFO or not any(part in record.getMessage() for part in _ROUTINE)


def preload_job_modules() -> None:
    """Import every job function's module once here, so each forked job process starts with them loaded
    (it would otherwise import tiler, zarr and scikit-image again: ~0.45 s per job, benchmarks/workers.py)."""
    for function, _queue in JOB_FUNCTIONS.values():
        importlib.import_module(function.rpartition(".")[0])
    importlib.import_module(MAIL_FUNCTION.rpartition(".")[0])
