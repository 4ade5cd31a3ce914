"""The jobs API and pages (permissions, filters, position, ETA), lost-job recovery by heartbeat, and mail exactly once."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import select

from portal.db import session_scope
from portal.job_estimates import estimate_eta, queue_position
from portal.job_recovery import recover_lost_jobs
from portal.jobs import ANALYSIS_QUEUE, JOB_FUNCTIONS, rq_job_id
from portal.models import Dataset, Job, Membership, Role, User, utcnow
from tests.conftest import csrf_token, log_in, post_multipart, run_burst, wait_until
from tiler.synthetic import write_synthetic_tiff
from workers.notify import mail_job_outcome


@pytest.fixture(autouse=True)
def test_kinds(monkeypatch):
    monkeypatch.setitem(JOB_FUNCTIONS, "test-slow", ("tests.jobs_for_tests.slow_job", ANALYSIS_QUEUE))


@pytest.fixture
def settings(settings, smtp_inbox):
    port, _ = smtp_inbox
    # Silent jobs are dated explicitly; a short window would let a slow burst worker's start take "running"
    # rows made a moment ago for lost ones.
    return replace(settings, job_stale_seconds=60, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)


def add_job(settings, *, dataset_id=None, user_email="ana@example.org", **fields) -> str:
    with session_scope(settings.sqlalchemy_url) as session:
        user_id = session.scalar(select(User.id).where(User.email == user_email))
        job = Job(kind=fields.pop("kind", "test-slow"), queue=fields.pop("queue", ANALYSIS_QUEUE), dataset_id=dataset_id,
                  user_id=user_id, **fields)
        session.add(job)
        session.flush()
        return job.id


def add_member(settings, dataset_id: str, email: str, role: Role) -> None:
    with session_scope(settings.sqlalchemy_url) as session:
        user = session.scalar(select(User).where(User.email == email))
        session.add(Membership(user_id=user.id, project_id=session.get(Dataset, dataset_id).project_id, role=role.value))


def other_client(app, make_user, email: str, **kwargs):
    make_user(email, **kwargs)
    client = app.test_client()
    log_in(client, email)
    return client


def post(client, path: str):
    return client.post(path, headers={"X-CSRFToken": csrf_token(client, "/")})


def test_list_and_get_jobs_with_filters_position_and_eta(settings, logged_in, ready_dataset):
    now = utcnow()
    for seconds in (10.0, 30.0):
        add_job(settings, dataset_id=ready_dataset, status="finished", wall_seconds=seconds, finished_at=now)
    first = add_job(settings, dataset_id=ready_dataset, created_at=now - timedelta(seconds=2))
    second = add_job(settings, dataset_id=ready_dataset, created_at=now - timedelta(seconds=1), params={"seconds": 1})
    running = add_job(settings, dataset_id=ready_dataset, status="running", progress=0.5, message="halfway",
                      started_at=now - timedelta(seconds=40), traceback="Traceback: secret")

    jobs = logged_in.get("/api/v1/jobs").json["jobs"]
    assert len(jobs) == 5 and jobs[0]["id"] == running
    queued = logged_in.get("/api/v1/jobs?status=queued").json["jobs"]
    assert [j["id"] for j in queued] == [second, first]
    assert [j["position"] for j in queued] == [2, 1]
    assert all(j["eta_seconds"] is None for j in queued), "no live worker: no estimate"
    assert [j["status"] for j in logged_in.get("/api/v1/jobs?status=finished,running&limit=2").json["jobs"]] \
        == ["running", "finished"]
    assert logged_in.get(f"/api/v1/jobs?dataset={ready_dataset}&status=failed").json["jobs"] == []
    assert logged_in.get("/api/v1/jobs?status=lost").status_code == 400
    assert logged_in.get("/api/v1/jobs?limit=0").status_code == 400

    job = logged_in.get(f"/api/v1/jobs/{running}").json
    assert job["message"] == "halfway" and job["dataset_id"] == ready_dataset and job["dataset_name"] == "ready"
    assert job["project"]["name"] == "ready project" and job["user"]["name"] == "ana@example.org"
    assert 35 <= job["eta_seconds"] <= 50, job["eta_seconds"]
    assert job["can_cancel"] and not job["can_retry"] and job["result_url"] is None
    assert "traceback" not in job, "only admins see tracebacks"

    with session_scope(settings.sqlalchemy_url) as session:
        first_job, second_job = session.get(Job, first), session.get(Job, second)
        assert queue_position(session, first_job) == 1 and queue_position(session, second_job) == 2
        assert estimate_eta(session, second_job, workers=2) == pytest.approx(2 * 20.0 / 2)
        assert estimate_eta(session, second_job, workers=0) is None
        assert queue_position(session, session.get(Job, running)) is None


def test_who_may_see_cancel_and_retry_a_job(app, settings, logged_in, ready_dataset, make_user):
    job_id = add_job(settings, dataset_id=ready_dataset, status="failed", error="it broke", traceback="Traceback: x")
    viewer = other_client(app, make_user, "vic@example.org")
    add_member(settings, ready_dataset, "vic@example.org", Role.VIEWER)
    analyst = other_client(app, make_user, "al@example.org")
    add_member(settings, ready_dataset, "al@example.org", Role.ANALYST)
    stranger = other_client(app, make_user, "eve@example.org")
    admin = other_client(app, make_user, "root@example.org", admin=True)

    assert app.test_client().get(f"/api/v1/jobs/{job_id}").status_code == 401
    assert app.test_client().get("/api/v1/jobs").status_code == 401
    assert stranger.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert stranger.get("/api/v1/jobs").json["jobs"] == []
    assert post(stranger, f"/api/v1/jobs/{job_id}/retry").status_code == 404
    assert viewer.get(f"/api/v1/jobs/{job_id}").json["can_retry"] is False
    response = post(viewer, f"/api/v1/jobs/{job_id}/retry")
    assert response.status_code == 403 and "viewer" in response.json["error"]
    assert post(viewer, f"/api/v1/jobs/{job_id}/cancel").status_code == 403
    assert post(analyst, f"/api/v1/jobs/{job_id}/retry").status_code == 403, "not their job"
    assert logged_in.post(f"/api/v1/jobs/{job_id}/retry").status_code == 400, "CSRF token required"
    assert admin.get(f"/api/v1/jobs/{job_id}").json["traceback"] == "Traceback: x"
    assert "Traceback: x" in admin.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Traceback: x" not in logged_in.get(f"/jobs/{job_id}").get_data(as_text=True)

    assert post(logged_in, f"/api/v1/jobs/{job_id}/cancel").json == {"error": "job is failed; nothing to cancel",
                                                                       "status": 409}
    retried = post(logged_in, f"/api/v1/jobs/{job_id}/retry")
    assert retried.status_code == 201 and retried.json["retry_of"] == job_id
    twice = post(admin, f"/api/v1/jobs/{job_id}/retry")
    assert twice.status_code == 409 and "already being retried" in twice.json["error"]
    assert post(admin, f"/api/v1/jobs/{retried.json['id']}/cancel").json["status"] == "cancelled", "owners may"
    finished = add_job(settings, dataset_id=ready_dataset, status="finished")
    assert post(logged_in, f"/api/v1/jobs/{finished}/retry").status_code == 409


def test_the_jobs_pages_render(settings, logged_in, ready_dataset):
    job_id = add_job(settings, dataset_id=ready_dataset, status="running", progress=0.25, message="level 1 of 3")
    add_job(settings, dataset_id=ready_dataset, status="failed", error="reader said no")
    page = logged_in.get("/jobs").get_data(as_text=True)
    assert 'href="/jobs"' in page, "nav link"
    assert f'data-id="{job_id}"' in page and "level 1 of 3 — 25 %" in page and "reader said no" in page
    assert 'src="/static/js/jobs.js"' in page
    failed_tab = logged_in.get("/jobs?status=failed").get_data(as_text=True)
    assert "reader said no" in failed_tab and job_id not in failed_tab
    detail = logged_in.get(f"/jobs/{job_id}")
    assert detail.status_code == 200 and 'id="job-progress"' in detail.get_data(as_text=True)
    assert logged_in.get("/jobs/nope").status_code == 404
    with logged_in.get("/static/js/jobs.js") as script:
        assert script.status_code == 200


def test_jobs_silent_too_long_are_queued_again_or_failed(settings, make_user, smtp_inbox):
    """A machine gone: its jobs' heartbeats stop; any worker re-queues them (same row) or fails them with the reason."""
    _, inbox = smtp_inbox
    make_user()
    now = utcnow()
    silent = now - timedelta(seconds=settings.job_stale_seconds + 5)
    lost = add_job(settings, status="running", worker="gone-host:123", attempts=1, max_attempts=2, heartbeat_at=silent,
                   started_at=silent, params={"seconds": 0.5})
    exhausted = add_job(settings, status="running", worker="gone-host:124", attempts=2, max_attempts=2,
                        heartbeat_at=silent, started_at=silent)
    alive = add_job(settings, status="running", worker="busy-host:1", attempts=1, max_attempts=2, heartbeat_at=now)
    cancelling = add_job(settings, status="running", worker="gone-host:125", attempts=1, max_attempts=2,
                         heartbeat_at=silent, cancel_requested=True)
    with session_scope(settings.sqlalchemy_url) as session:
        assert sorted(recover_lost_jobs(session, settings)) == sorted([lost, exhausted, cancelling])
        assert recover_lost_jobs(session, settings) == [], "settled once"
    with session_scope(settings.sqlalchemy_url) as session:
        requeued = session.get(Job, lost)
        assert requeued.status == "queued" and requeued.worker == "" and "no heartbeat" in requeued.message
        failed = session.get(Job, exhausted)
        assert failed.status == "failed" and "died or its machine is gone" in failed.error
        assert "started 2 times" in failed.error
        assert session.get(Job, alive).status == "running"
        assert session.get(Job, cancelling).status == "cancelled"
    assert rq_job_id(lost, 2) in Queue(ANALYSIS_QUEUE, connection=Redis.from_url(settings.redis_url)).job_ids

    run_burst(settings)
    with session_scope(settings.sqlalchemy_url) as session:
        done = session.get(Job, lost)
        assert done.status == "finished" and done.attempts == 2
    wait_until(lambda: len(inbox) >= 2, what="a mail for each final outcome")
    assert sorted(m["Subject"] for m in inbox) == ["Job failed: test-slow", "Job finished: test-slow"]


def test_an_outcome_is_mailed_once_however_often_the_mail_job_runs(settings, make_user, smtp_inbox):
    _, inbox = smtp_inbox
    make_user()
    finished = add_job(settings, status="finished", params={"recipients": ["boss@lab.example", "ANA@example.org"]})
    cancelled = add_job(settings, status="cancelled")
    running = add_job(settings, status="running")
    quiet = add_job(settings, status="failed", params={"notify": False})
    assert mail_job_outcome(finished, settings) == f"smtp://127.0.0.1:{settings.smtp_port}"
    assert mail_job_outcome(finished, settings) is None
    for job_id in (cancelled, running, quiet):
        assert mail_job_outcome(job_id, settings) is None
    queue = Queue("mail", connection=Redis.from_url(settings.redis_url))
    for _ in range(2):
        queue.enqueue_call("workers.notify.mail_job_outcome", args=(finished,))
    run_burst(settings)
    [message] = inbox
    assert message["To"] == "ana@example.org, boss@lab.example"
    assert f"/jobs/{finished}" in message.get_payload()
    with session_scope(settings.sqlalchemy_url) as session:
        assert session.get(Job, finished).notified_at is not None
        assert session.get(Job, running).notified_at is None


def test_a_cancelled_conversion_can_be_retried(settings, logged_in, smtp_inbox, tmp_path):
    _, inbox = smtp_inbox
    headers = {"X-CSRFToken": csrf_token(logged_in, "/")}
    project_id = logged_in.post("/api/v1/projects", json={"name": "Mosaics"}, headers=headers).json["id"]
    tiff = Path(write_synthetic_tiff(tmp_path / "m.tif", (300, 400), "uint8", tile=256)).read_bytes()
    dataset = post_multipart(logged_in, f"/api/v1/projects/{project_id}/datasets",
                             {"file": (io.BytesIO(tiff), "m.tif")}, headers).json
    job_id = dataset["job"]["id"]
    assert logged_in.post(f"/api/v1/jobs/{job_id}/cancel", headers=headers).json["status"] == "cancelled"
    failed = logged_in.get(f"/api/v1/datasets/{dataset['id']}").json
    assert failed["status"] == "failed" and "cancelled" in failed["status_reason"]

    retried = logged_in.post(f"/api/v1/jobs/{job_id}/retry", headers=headers)
    assert retried.status_code == 201 and retried.json["kind"] == "convert"
    assert logged_in.get(f"/api/v1/datasets/{dataset['id']}").json["status"] == "uploaded"
    run_burst(settings)
    ready = logged_in.get(f"/api/v1/datasets/{dataset['id']}").json
    assert ready["status"] == "ready" and ready["job"]["id"] == retried.json["id"]
    again = logged_in.post(f"/api/v1/jobs/{job_id}/retry", headers=headers)
    assert again.status_code == 409 and again.json["error"] == "the dataset is already converted"
    wait_until(lambda: inbox, what="the mail")
    [message] = inbox
    assert message["Subject"] == "Ready to view: m.tif"


def test_a_queued_job_whose_message_was_lost_is_queued_again(settings, make_user):
    """A worker that died between taking a message and starting the job leaves a queued row without a message."""
    make_user()
    old = utcnow() - timedelta(seconds=settings.job_stale_seconds + 5)
    orphan = add_job(settings, status="queued", created_at=old, max_attempts=2, params={"seconds": 0.1})
    spent = add_job(settings, status="queued", created_at=old, max_attempts=1)
    waiting = add_job(settings, status="queued", created_at=old, max_attempts=2)
    young = add_job(settings, status="queued", max_attempts=2)
    with session_scope(settings.sqlalchemy_url) as session:
        from portal.jobs import send_to_queue

        send_to_queue(settings, session.get(Job, waiting))  # its message is still in the queue: leave it be
        assert sorted(recover_lost_jobs(session, settings)) == sorted([orphan, spent])
    with session_scope(settings.sqlalchemy_url) as session:
        again = session.get(Job, orphan)
        assert again.status == "queued" and again.attempts == 1 and "queue message was lost" in again.message
        assert session.get(Job, spent).status == "failed" and "message was lost" in session.get(Job, spent).error
        assert session.get(Job, waiting).status == session.get(Job, young).status == "queued"
    assert rq_job_id(orphan, 2) in Queue(ANALYSIS_QUEUE, connection=Redis.from_url(settings.redis_url)).job_ids
