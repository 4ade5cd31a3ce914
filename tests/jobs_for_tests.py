"""Job functions that only tests enqueue (by dotted name, like the real ones)."""

import os
import signal
import time

from portal.db import session_scope
from portal.models import Job, JobStatus, utcnow
from portal.settings import Settings
from workers.progress import JobRecorder, worker_name


def die_while_running(job_id: str) -> None:
    """Mark the job running, then die the way an out-of-memory kill does."""
    with session_scope(Settings.from_env().sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        job.status, job.started_at, job.worker = JobStatus.RUNNING.value, utcnow(), worker_name()
    os.kill(os.getpid(), signal.SIGKILL)


def _burn(seconds: float) -> None:
    """Spin the CPU for `seconds`, so that CPU time is measurable."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(i * i for i in range(1000))


def slow_job(job_id: str) -> str:
    """Work for params["seconds"] seconds, reporting progress like a real job and failing like convert does
    (catching Exception). params: fail_unless_retry → fail at once unless this job is a retry of another."""
    settings = Settings.from_env()
    recorder = JobRecorder(settings.sqlalchemy_url, job_id, settings=settings)
    recorder.start("warming up")
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        params, is_retry = dict(job.params), job.retry_of_id is not None
    if params.get("fail_unless_retry") and not is_retry:
        recorder.fail("failed on purpose: only a retry succeeds")
        return "failed"
    seconds = float(params.get("seconds", 3))
    try:
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            _burn(0.02)
            time.sleep(0.05)
            recorder.progress(elapsed / seconds, f"step {int(elapsed * 10)}")
    except Exception as exc:
        recorder.fail(f"the slow job failed: {exc}")
        return "failed"
    recorder.finish("done working")
    return "finished"


def sleepy_job(job_id: str) -> None:
    """Start, then sleep params["seconds"] without catching anything (a time limit ends it from outside)."""
    settings = Settings.from_env()
    recorder = JobRecorder(settings.sqlalchemy_url, job_id, settings=settings)
    recorder.start("sleeping")
    with session_scope(settings.sqlalchemy_url) as session:
        seconds = float(session.get(Job, job_id).params.get("seconds", 30))
    time.sleep(seconds)
    recorder.finish("woke up")


def failing_job(job_id: str) -> None:
    """Start, then raise an exception the job does not catch."""
    settings = Settings.from_env()
    JobRecorder(settings.sqlalchemy_url, job_id, settings=settings).start("about to fail")
    raise ValueError("boom: the sample is upside down")


def die_on_first_attempt(job_id: str) -> None:
    """Die like an out-of-memory kill on the first attempt; finish on the next."""
    settings = Settings.from_env()
    recorder = JobRecorder(settings.sqlalchemy_url, job_id, settings=settings)
    recorder.start("trying")
    if recorder.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    recorder.finish("survived")


def _append_record(path: str, line: str) -> None:
    """One O_APPEND write per line, so lines of concurrent processes never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def recorded_job(job_id: str) -> None:
    """Append "start <job> <attempt> <pid> <worker pid>" to params["record"], work params["seconds"] reporting
    progress (an attempt whose row moved on stops there), finish, then append "end" with the same fields."""
    settings = Settings.from_env()
    recorder = JobRecorder(settings.sqlalchemy_url, job_id, settings=settings)
    recorder.start("recording")
    with session_scope(settings.sqlalchemy_url) as session:
        params = dict(session.get(Job, job_id).params)
    who = f"{job_id} {recorder.attempt} {os.getpid()} {os.getppid()}"
    _append_record(params["record"], f"start {who}")
    seconds = float(params.get("seconds", 0.5))
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        time.sleep(0.05)
        recorder.progress(elapsed / seconds, "working")
    recorder.finish("recorded", notify=False)
    _append_record(params["record"], f"end {who}")
