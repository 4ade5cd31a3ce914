"""Faults around jobs: a queue that is down, a job process that dies, a worker that is gone."""

import socket

from redis import Redis
from rq import Queue
from sqlalchemy import select

from portal.accounts import create_user
from portal.db import session_scope
from portal.job_recovery import fail_interrupted_jobs
from portal.models import Dataset, DatasetStatus, Job, JobStatus, Project
from tests.conftest import run_worker_burst


def make_dataset(session, status=DatasetStatus.CONVERTING.value) -> Dataset:
    user = create_user(session, "ana@example.org", "long enough password")
    project = Project(name="p", created_by_id=user.id)
    session.add(project)
    session.flush()
    dataset = Dataset(project_id=project.id, name="d", original_filename="d.tif", original_sha256="0" * 64,
                      original_size=1, status=status)
    session.add(dataset)
    session.flush()
    return dataset


def test_a_running_job_whose_process_is_gone_fails_with_a_reason(settings):
    with session_scope(settings.sqlalchemy_url) as session:
        dataset = make_dataset(session)
        gone = Job(kind="convert", queue="convert", dataset_id=dataset.id, status=JobStatus.RUNNING.value,
                   worker=f"{socket.gethostname()}:999999999")
        elsewhere = Job(kind="convert", queue="convert", status=JobStatus.RUNNING.value, worker="other-host:1")
        session.add_all([gone, elsewhere])
        session.commit()
        assert fail_interrupted_jobs(session) == [gone.id]
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, gone.id)
        assert job.status == "failed" and "interrupted" in job.error
        assert session.get(Dataset, dataset.id).status == "failed"
        assert session.get(Job, elsewhere.id).status == "running", "another host's jobs are not ours to judge"


def test_a_job_process_killed_mid_run_fails_and_the_worker_goes_on(settings):
    with session_scope(settings.sqlalchemy_url) as session:
        dataset = make_dataset(session, DatasetStatus.UPLOADED.value)
        job = Job(kind="convert", queue="convert", dataset_id=dataset.id)
        session.add(job)
        session.commit()
        job_id, dataset_id = job.id, dataset.id
    queue = Queue("convert", connection=Redis.from_url(settings.redis_url))
    queue.enqueue_call("tests.jobs_for_tests.die_while_running", args=(job_id,), job_id=job_id)
    run_worker_burst(settings)
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        assert job.status == "failed" and "died unexpectedly" in job.error and job.finished_at is not None
        dataset = session.get(Dataset, dataset_id)
        assert dataset.status == "failed" and "died unexpectedly" in dataset.status_reason


def test_a_job_process_killed_mid_run_is_started_again_while_attempts_allow(settings):
    with session_scope(settings.sqlalchemy_url) as session:
        dataset = make_dataset(session, DatasetStatus.READY.value)
        job = Job(kind="test-dying", queue="analysis", dataset_id=dataset.id, max_attempts=2, timeout_seconds=60)
        session.add(job)
        session.commit()
        job_id = job.id
    queue = Queue("analysis", connection=Redis.from_url(settings.redis_url))
    queue.enqueue_call("tests.jobs_for_tests.die_on_first_attempt", args=(job_id,), job_id=job_id)
    run_worker_burst(settings)
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        assert job.status == "finished" and job.attempts == 2 and job.message == "survived", (job.status, job.error)
        assert session.get(Dataset, job.dataset_id).status == "ready"


def test_timestamps_are_utc_aware_on_every_database(settings):
    with session_scope(settings.sqlalchemy_url) as session:
        make_dataset(session)
    with session_scope(settings.sqlalchemy_url) as session:
        dataset = session.scalar(select(Dataset))
        assert dataset.created_at.utcoffset().total_seconds() == 0
