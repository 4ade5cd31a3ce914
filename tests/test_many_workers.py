"""Three real workers sharing Redis, database and storage; one SIGKILLed mid-job: nothing lost, nothing run twice."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

import psutil
import pytest
from redis import Redis
from rq import Queue, Worker
from sqlalchemy import select

from portal.db import session_scope
from portal.jobs import ANALYSIS_QUEUE, JOB_FUNCTIONS, enqueue
from portal.models import Job
from tests.conftest import wait_until

JOB_COUNT = 20
WORKER_COUNT = 3


@pytest.fixture(autouse=True)
def recorded_kind(monkeypatch):
    monkeypatch.setitem(JOB_FUNCTIONS, "test-recorded", ("tests.jobs_for_tests.recorded_job", ANALYSIS_QUEUE))


@pytest.fixture
def settings(settings):
    # The killed worker's job is found by its vanished process on this host; the stale window only has to be wide
    # enough that a busy machine's late heartbeats never make a live job look lost.
    return replace(settings, job_heartbeat_seconds=1, job_stale_seconds=10, job_attempts=2)


def worker_count(settings) -> int:
    connection = Redis.from_url(settings.redis_url)
    return Worker.count(connection=connection, queue=Queue(ANALYSIS_QUEUE, connection=connection))


def jobs(settings) -> dict[str, Job]:
    with session_scope(settings.sqlalchemy_url) as session:
        return {job.id: job for job in session.scalars(select(Job)).all()}


def read_record(path) -> list[tuple[str, str, int, int, int]]:
    """(event, job id, attempt, work-horse pid, worker pid) per line."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        event, job_id, attempt, pid, worker_pid = line.split()
        rows.append((event, job_id, int(attempt), int(pid), int(worker_pid)))
    return rows


def busy_worker(workers, settings, record):
    """(worker, job id) of a worker whose work-horse is inside a job that has started recording."""
    started = {job_id: worker_pid for event, job_id, _, _, worker_pid in read_record(record) if event == "start"}
    ended = {job_id for event, job_id, *_ in read_record(record) if event == "end"}
    rows = jobs(settings)
    for job_id, worker_pid in started.items():
        if job_id not in ended and rows[job_id].status == "running" and rows[job_id].progress > 0:
            for worker in workers:
                if worker.process.pid == worker_pid:
                    return worker, job_id
    return None


def test_twenty_jobs_on_three_workers_one_killed_mid_job(settings, start_worker, tmp_path):
    record = tmp_path / "record.log"
    workers = [start_worker(settings, ANALYSIS_QUEUE) for _ in range(WORKER_COUNT)]
    wait_until(lambda: worker_count(settings) >= WORKER_COUNT, timeout=30, what="three workers registering")

    with session_scope(settings.sqlalchemy_url) as session:
        ids = [enqueue(session, settings, "test-recorded",
                       params={"record": str(record), "seconds": 0.3 + (i % 8) * 0.1}).id for i in range(JOB_COUNT)]

    wait_until(lambda: sum(e == "end" for e, *_ in read_record(record)) >= 3, timeout=30, what="three jobs finishing")
    victim, lost_job = wait_until(lambda: busy_worker(workers, settings, record), timeout=20, what="a worker mid-job")
    victim_pids = {victim.process.pid} | {c.pid for c in psutil.Process(victim.process.pid).children(recursive=True)}
    victim.kill_with_its_jobs()
    killed_at = time.monotonic()

    wait_until(lambda: all(job.is_final for job in jobs(settings).values()), timeout=90, what="every job ending")
    took = time.monotonic() - killed_at
    rows = jobs(settings)
    lines = read_record(record)
    starts = Counter(job_id for event, job_id, *_ in lines if event == "start")
    ends = [line for line in lines if line[0] == "end"]

    assert sorted(rows) == sorted(ids), "no job lost, none invented"
    assert {job.status for job in rows.values()} == {"finished"}, {j.id: (j.status, j.error) for j in rows.values()}
    assert Counter(job_id for _, job_id, *_ in ends) == Counter(ids), "each job ran to completion exactly once"
    for job_id, job in rows.items():
        assert starts[job_id] == job.attempts, (job_id, starts[job_id], job.attempts)

    lost = rows[lost_job]
    assert lost.attempts == 2 and lost.max_attempts == 2, (lost.attempts, lost.message)
    [(_, _, attempt, pid, worker_pid)] = [line for line in ends if line[1] == lost_job]
    assert attempt == 2 and worker_pid != victim.process.pid and pid not in victim_pids
    assert lost.worker.rsplit(":", 1)[1] == str(pid)

    worker_pids = {line[4] for line in ends}
    assert len(worker_pids) >= 2, f"all jobs ran on one worker: {worker_pids}"
    assert all(worker.alive() for worker in workers if worker is not victim)
    assert took < 60
