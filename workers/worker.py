"""The worker entry point: an RQ worker on the Tilescope queues (`tilescope worker`)."""

from __future__ import annotations

import logging

from rq import Queue, Worker

from portal.db import session_scope
from portal.jobs import ALL_QUEUES, fail_interrupted_jobs, fail_job, redis_connection
from portal.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings, queues: tuple[str, ...] = ALL_QUEUES, *, burst: bool = False, name: str | None = None) -> bool:
    """Work on `queues` (in priority order) until stopped, or until they are empty with `burst`."""
    with session_scope(settings.sqlalchemy_url) as session:
        for job_id in fail_interrupted_jobs(session):
            log.warning("job %s was left running by a worker that is gone; marked failed", job_id)

    def on_work_horse_killed(job, _pid, status, _rusage) -> None:
        """The process running a job died (out of memory, SIGKILL): the job and its dataset fail, with a reason."""
        with session_scope(settings.sqlalchemy_url) as session:
            fail_job(session, job.id, f"the process running this job died unexpectedly (wait status {status}); "
                                      "it may have run out of memory")

    connection = redis_connection(settings)
    worker = Worker([Queue(q, connection=connection) for q in queues], connection=connection, name=name,
                    work_horse_killed_handler=on_work_horse_killed)
    logging.getLogger("rq.worker").setLevel(settings.log_level.upper())
    return worker.work(burst=burst, logging_level=settings.log_level.upper())
