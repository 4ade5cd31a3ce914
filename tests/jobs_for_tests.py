"""Job functions that only tests enqueue (by dotted name, like the real ones)."""

import os
import signal

from portal.db import session_scope
from portal.models import Job, JobStatus, utcnow
from portal.settings import Settings
from workers.progress import worker_name


def die_while_running(job_id: str) -> None:
    """Mark the job running, then die the way an out-of-memory kill does."""
    with session_scope(Settings.from_env().sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        job.status, job.started_at, job.worker = JobStatus.RUNNING.value, utcnow(), worker_name()
    os.kill(os.getpid(), signal.SIGKILL)
