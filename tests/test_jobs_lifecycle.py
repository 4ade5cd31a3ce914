"""Jobs on real worker processes, Redis and SMTP: lost workers, time limits, exceptions, cancel, retry, mail once."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import pytest
from redis import Redis
from rq import Queue, Worker

from portal.db import session_scope
from portal.jobs import ANALYSIS_QUEUE, JOB_FUNCTIONS, enqueue
from portal.models import Job
from tests.conftest import csrf_token, run_burst, wait_until
from workers.worker import check_interval

TEST_KINDS = {"test-slow": "slow_job", "test-sleepy": "sleepy_job", "test-failing": "failing_job"}


@pytest.fixture(autouse=True)
def test_kinds(monkeypatch):
    for kind, function in TEST_KINDS.items():
        monkeypatch.setitem(JOB_FUNCTIONS, kind, (f"tests.jobs_for_tests.{function}", ANALYSIS_QUEUE))


@pytest.fixture
def settings(settings, smtp_inbox):
    port, _ = smtp_inbox
    return replace(settings, job_heartbeat_seconds=1, job_stale_seconds=6, job_attempts=2, smtp_host="127.0.0.1",
                   smtp_port=port, smtp_starttls=False, mail_from="portal@lab.example")


def queue_job(settings, kind: str, *, user_id=None, dataset_id=None, **params) -> str:
    with session_scope(settings.sqlalchemy_url) as session:
        return enqueue(session, settings, kind, user_id=user_id, dataset_id=dataset_id, params=params).id


def row(settings, job_id: str) -> Job:
    with session_scope(settings.sqlalchemy_url) as session:
        return session.get(Job, job_id)


def running_with_progress(settings, job_id: str):
    job = row(settings, job_id)
    return job.status == "running" and job.progress > 0.05 and job


def worker_count(settings) -> int:
    connection = Redis.from_url(settings.redis_url)
    return Worker.count(connection=connection, queue=Queue(ANALYSIS_QUEUE, connection=connection))


def test_a_job_whose_worker_dies_is_queued_again_and_finishes_on_another_worker(settings, make_user, start_worker,
                                                                                smtp_inbox):
    _, inbox = smtp_inbox
    job_id = queue_job(settings, "test-slow", user_id=make_user(), seconds=8, recipients=["boss@lab.example"])  # outlives starting a second worker (~3 s)
    first = start_worker(settings, ANALYSIS_QUEUE)
    lost_attempt = wait_until(lambda: running_with_progress(settings, job_id), what="the first attempt running")
    second = start_worker(settings, ANALYSIS_QUEUE, "mail")
    wait_until(lambda: worker_count(settings) >= 2, what="the second worker registering")

    first.kill_with_its_jobs()  # worker and work-horse die at once, as when the machine goes away
    killed = time.monotonic()
    again = wait_until(lambda: (job := row(settings, job_id)).attempts == 2 and job, timeout=30,
                       what="the job starting again")
    assert time.monotonic() - killed < settings.job_stale_seconds + check_interval(settings) + 5
    assert again.worker != lost_attempt.worker

    done = wait_until(lambda: (job := row(settings, job_id)).status == "finished" and job, timeout=30,
                      what="the second attempt finishing")
    assert done.error == "" and done.progress == 1.0 and done.max_attempts == 2
    assert done.wall_seconds > 0 and done.cpu_seconds > 0 and done.peak_rss_bytes > 0
    assert done.host == socket.gethostname()
    wait_until(lambda: inbox, what="the mail")
    time.sleep(1.5)
    [message] = inbox  # one mail for the outcome, none for the lost attempt
    assert "ana@example.org" in message["To"] and "boss@lab.example" in message["To"]
    assert "finished" in message["Subject"]
    assert second.alive()


def test_a_job_whose_worker_dies_fails_with_the_reason_when_no_attempt_is_left(settings, make_user, start_worker,
                                                                               smtp_inbox):
    _, inbox = smtp_inbox
    settings = replace(settings, job_attempts=1)
    job_id = queue_job(settings, "test-slow", user_id=make_user(), seconds=30)
    first = start_worker(settings, ANALYSIS_QUEUE)
    wait_until(lambda: running_with_progress(settings, job_id), what="the job running")
    first.kill_with_its_jobs()

    start_worker(settings, ANALYSIS_QUEUE, "mail")  # finds the lost job when it starts
    job = wait_until(lambda: (job := row(settings, job_id)).status == "failed" and job, timeout=20,
                     what="the lost job failing")
    assert "worker" in job.error and "died" in job.error, job.error
    assert job.attempts == 1 and job.finished_at is not None
    wait_until(lambda: inbox, what="the mail")
    [message] = inbox
    assert message["To"] == "ana@example.org" and "failed" in message["Subject"]
    assert "died" in message.get_payload()


def test_a_job_over_its_time_limit_fails_with_the_limit_as_reason(settings, make_user, smtp_inbox):
    _, inbox = smtp_inbox
    settings = replace(settings, analysis_timeout=2)
    user_id = make_user()
    caught = queue_job(settings, "test-slow", user_id=user_id, seconds=60)  # catches Exception, like convert
    uncaught = queue_job(settings, "test-sleepy", user_id=user_id, seconds=60)
    started = time.monotonic()
    run_burst(settings)
    assert time.monotonic() - started < 40
    for job_id in (caught, uncaught):
        job = row(settings, job_id)
        assert job.status == "failed" and job.error == "stopped after 2 s (the limit for this kind of job)", job.error
        assert job.timeout_seconds == 2 and job.wall_seconds >= 1.5
    wait_until(lambda: len(inbox) == 2, what="one mail per job")


def test_an_exception_keeps_its_traceback_for_admins_and_a_readable_error(settings, make_user):
    job_id = queue_job(settings, "test-failing", user_id=make_user())
    run_burst(settings)
    job = row(settings, job_id)
    assert job.status == "failed" and job.error == "ValueError: boom: the sample is upside down"
    assert "Traceback" in job.traceback and "jobs_for_tests.py" in job.traceback
    assert job.attempts == 1 and job.cpu_seconds is not None and job.host == socket.gethostname()


def test_cancel_a_queued_and_a_running_job_then_retry(settings, logged_in, ready_dataset, start_worker, smtp_inbox):
    _, inbox = smtp_inbox
    headers = {"X-CSRFToken": csrf_token(logged_in, "/")}
    user_id = row_user(settings)
    running_id = queue_job(settings, "test-slow", user_id=user_id, dataset_id=ready_dataset, seconds=60)
    queued_id = queue_job(settings, "test-slow", user_id=user_id, dataset_id=ready_dataset, seconds=1)

    cancelled = logged_in.post(f"/api/v1/jobs/{queued_id}/cancel", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled", cancelled.json
    assert queued_id not in Queue(ANALYSIS_QUEUE, connection=Redis.from_url(settings.redis_url)).job_ids

    worker = start_worker(settings, ANALYSIS_QUEUE, "mail")
    wait_until(lambda: running_with_progress(settings, running_id), what="the job running")
    response = logged_in.post(f"/api/v1/jobs/{running_id}/cancel", headers=headers)
    assert response.status_code == 200 and response.json["cancel_requested"], response.json
    job = wait_until(lambda: (job := row(settings, running_id)).status == "cancelled" and job, timeout=15,
                     what="the running job ending cancelled")
    assert job.error == "" and job.finished_at is not None
    assert row(settings, queued_id).attempts == 0, "a cancelled queued job never starts"
    again = logged_in.post(f"/api/v1/jobs/{running_id}/cancel", headers=headers)
    assert again.status_code == 409 and again.json["error"] == "job is cancelled; nothing to cancel"

    retried = logged_in.post(f"/api/v1/jobs/{queued_id}/retry", headers=headers)
    assert retried.status_code == 201 and retried.json["retry_of"] == queued_id, retried.json
    new_id = retried.json["id"]
    assert new_id != queued_id and retried.json["status"] == "queued"
    done = wait_until(lambda: (job := row(settings, new_id)).status == "finished" and job, timeout=30,
                      what="the retried job finishing")
    assert done.kind == "test-slow" and done.dataset_id == ready_dataset and done.params == {"seconds": 1}
    wait_until(lambda: inbox, what="the mail about the retried job")
    time.sleep(1.5)
    [message] = inbox  # about the retry; cancelled jobs mail nothing
    assert "finished" in message["Subject"] and new_id in message.get_payload()
    assert worker.alive(), "stopping a job does not stop its worker"


def row_user(settings) -> int:
    from sqlalchemy import select

    from portal.models import User

    with session_scope(settings.sqlalchemy_url) as session:
        return session.scalar(select(User.id).where(User.email == "ana@example.org"))
