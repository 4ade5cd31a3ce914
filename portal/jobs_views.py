"""Jobs in the browser and the API: lists with live progress, one job, cancel and retry (thin adapters over portal.jobs)."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from portal.context import db, settings
from portal.job_estimates import estimate_eta, live_workers, mean_wall_seconds, queue_positions
from portal.jobs import JobStateError, QueueUnavailable, cancel_job, retry_job
from portal.models import Dataset, Job, JobStatus, Membership, Role, User
from portal.permissions import role_in

blueprint = Blueprint("jobs", __name__)

STATUS_TABS = ("queued", "running", "finished", "failed", "cancelled")
DEFAULT_LIMIT, MAX_LIMIT = 50, 200


def visible_jobs(user: User):
    """Jobs on datasets of the user's projects, plus dataset-less jobs they queued; admins see every job."""
    query = select(Job).outerjoin(Dataset, Job.dataset_id == Dataset.id)
    if not user.is_admin:
        projects = select(Membership.project_id).where(Membership.user_id == user.id)
        query = query.where(or_(Dataset.project_id.in_(projects), (Job.dataset_id.is_(None)) & (Job.user_id == user.id)))
    return query


def job_role(session: Session, user: User, job: Job) -> Role | None:
    """The user's role over a job: their project role, or analyst for their own dataset-less job; None: invisible."""
    if job.dataset_id is not None:
        return role_in(session, user, job.dataset.project_id)
    if user.is_admin:
        return Role.OWNER
    return Role.ANALYST if job.user_id == user.id else None


def may_manage(user: User, job: Job, role: Role | None) -> bool:
    """Cancel and retry: the requester (while still analyst or owner), project owners and admins."""
    return role is not None and (role is Role.OWNER or (role is Role.ANALYST and job.user_id == user.id))


def job_or_404(session: Session, user: User, job_id: str, *, manage: bool = False) -> Job:
    job = session.get(Job, job_id)
    role = job_role(session, user, job) if job is not None else None
    if role is None:
        abort(404, f"no job {job_id} visible to you")
    if manage and not may_manage(user, job, role):
        abort(403, f"your role in this project is {role.value}; only the person who queued the job, "
                   "project owners and admins may cancel or retry it")
    return job


def iso(moment) -> str | None:
    return moment.isoformat() if moment else None


class Estimates:
    """Queue positions, live worker counts and mean run times, each computed once per request."""

    def __init__(self, session: Session):
        self.session = session
        self.positions = queue_positions(session)
        self._workers: dict[str, int | None] = {}
        self._walls: dict[str, float | None] = {}

    def eta(self, job: Job) -> float | None:
        if job.status != JobStatus.QUEUED.value:
            return estimate_eta(self.session, job)
        if job.queue not in self._workers:
            self._workers[job.queue] = live_workers(settings(), job.queue)
        if job.kind not in self._walls:
            self._walls[job.kind] = mean_wall_seconds(self.session, job.kind)
        return estimate_eta(self.session, job, workers=self._workers[job.queue], position=self.positions.get(job.id),
                            mean_wall=self._walls[job.kind])


def job_summary(job: Job, estimates: Estimates, user: User, role: Role | None) -> dict:
    """The JSON shape of a job in the API (and the data the jobs pages render)."""
    dataset, result = job.dataset, job.result
    project = dataset.project if dataset is not None else None
    eta = estimates.eta(job)
    manage = may_manage(user, job, role)
    summary = {
        "id": job.id, "kind": job.kind, "queue": job.queue, "status": job.status, "progress": job.progress,
        "message": job.message, "error": job.error,
        "dataset_id": job.dataset_id, "dataset_name": dataset.name if dataset else None,
        "dataset_url": url_for("pages.dataset", dataset_id=dataset.id) if dataset else None,
        "project": {"id": project.id, "name": project.name} if project else None,
        "user": {"id": job.user.id, "name": job.user.display_name} if job.user else None,
        "created_at": iso(job.created_at), "started_at": iso(job.started_at), "finished_at": iso(job.finished_at),
        "attempts": job.attempts, "max_attempts": job.max_attempts, "timeout_seconds": job.timeout_seconds,
        "cancel_requested": job.cancel_requested,
        "position": estimates.positions.get(job.id), "eta_seconds": None if eta is None else round(eta, 1),
        "wall_seconds": job.wall_seconds, "cpu_seconds": job.cpu_seconds, "peak_rss_bytes": job.peak_rss_bytes,
        "host": job.host, "retry_of": job.retry_of_id,
        "result_url": f"/results/{result.id}" if result is not None else None,
        "url": url_for("jobs.job_page", job_id=job.id), "api": url_for("jobs.get_job", job_id=job.id),
        "can_cancel": manage and not job.is_final and not job.cancel_requested,
        "can_retry": manage and job.status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value),
    }
    if user.is_admin:
        summary["traceback"] = job.traceback
    return summary


def listed_jobs(session: Session, user: User) -> tuple[list[dict], list[str]]:
    """The jobs the query string asks for (status=a,b  dataset=<id>  limit=n), newest first, as summaries."""
    statuses = [s for s in request.args.get("status", "").split(",") if s]
    unknown = [s for s in statuses if s not in STATUS_TABS]
    if unknown:
        abort(400, f"unknown status {', '.join(unknown)}; use {', '.join(STATUS_TABS)}")
    limit = request.args.get("limit", DEFAULT_LIMIT, type=int)
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        abort(400, f"limit must be between 1 and {MAX_LIMIT}")
    query = visible_jobs(user)
    if statuses:
        query = query.where(Job.status.in_(statuses))
    if request.args.get("dataset"):
        query = query.where(Job.dataset_id == request.args["dataset"])
    jobs = session.scalars(query.order_by(Job.created_at.desc(), Job.id).limit(limit)).all()
    estimates = Estimates(session)
    return [job_summary(job, estimates, user, job_role(session, user, job)) for job in jobs], statuses


def one_job(job: Job) -> dict:
    return job_summary(job, Estimates(db()), current_user, job_role(db(), current_user, job))


@blueprint.get("/api/v1/jobs")
def list_jobs():
    jobs, _ = listed_jobs(db(), current_user)
    return jsonify(jobs=jobs)


@blueprint.get("/api/v1/jobs/<job_id>")
def get_job(job_id: str):
    return jsonify(one_job(job_or_404(db(), current_user, job_id)))


@blueprint.post("/api/v1/jobs/<job_id>/cancel")
def cancel(job_id: str):
    job = job_or_404(db(), current_user, job_id, manage=True)
    try:
        cancel_job(db(), settings(), job)
    except JobStateError as exc:
        abort(409, str(exc))
    return jsonify(one_job(job))


@blueprint.post("/api/v1/jobs/<job_id>/retry")
def retry(job_id: str):
    job = job_or_404(db(), current_user, job_id, manage=True)
    try:
        again = retry_job(db(), settings(), job, current_user.id)
    except JobStateError as exc:
        abort(409, str(exc))
    except QueueUnavailable as exc:
        abort(503, str(exc))
    return jsonify(one_job(again)), 201


@blueprint.get("/jobs")
def jobs_page():
    jobs, statuses = listed_jobs(db(), current_user)
    return render_template("jobs.html", jobs=jobs, tabs=STATUS_TABS, current=",".join(statuses))


@blueprint.get("/jobs/<job_id>")
def job_page(job_id: str):
    job = job_or_404(db(), current_user, job_id)
    return render_template("job.html", job=one_job(job), project=job.dataset.project if job.dataset else None)
