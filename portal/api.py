"""The JSON API under /api/v1: projects and datasets (with upload); jobs are in portal.jobs_views."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request, url_for
from flask_login import current_user
from sqlalchemy import select

from portal.context import db, settings, storage
from portal.datasets import EmptyUpload, dataset_summary, register_upload
from portal.jobs import QueueUnavailable
from portal.models import Dataset, Role
from portal.pages import create_project_for
from portal.permissions import dataset_or_404, project_or_404, visible_projects

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")


def project_summary(project) -> dict:
    return {"id": project.id, "name": project.name, "description": project.description,
            "created_at": project.created_at.isoformat(), "url": url_for("pages.project", project_id=project.id)}


@blueprint.get("/projects")
def list_projects():
    return jsonify(projects=[project_summary(p) for p in visible_projects(db(), current_user)])


@blueprint.post("/projects")
def create_project():
    payload = request.get_json(silent=True) or request.form
    name = str(payload.get("name", "")).strip()
    if not name:
        abort(400, "field 'name' is required")
    project = create_project_for(current_user, name, str(payload.get("description", "")))
    return jsonify(project_summary(project)), 201


@blueprint.get("/projects/<int:project_id>/datasets")
def list_datasets(project_id: int):
    project = project_or_404(db(), current_user, project_id)
    datasets = db().scalars(select(Dataset).where(Dataset.project_id == project.id).order_by(Dataset.created_at.desc()))
    return jsonify(datasets=[dataset_summary(d) for d in datasets])


@blueprint.post("/projects/<int:project_id>/datasets")
def upload_dataset(project_id: int):
    """Multipart upload (field `file`, optional `name`), streamed to disk; answers 202 with the queued dataset."""
    project = project_or_404(db(), current_user, project_id, Role.ANALYST)
    file = request.files.get("file")
    if file is None or not file.filename:
        abort(400, "multipart field 'file' with a filename is required")
    try:
        dataset = register_upload(db(), settings(), storage(), project, current_user, file.stream, file.filename,
                                  request.form.get("name", ""))
    except EmptyUpload as exc:
        abort(400, str(exc))
    except QueueUnavailable as exc:
        abort(503, str(exc))
    body = dataset_summary(dataset) | {"url": url_for("pages.dataset", dataset_id=dataset.id)}
    return jsonify(body), 202


@blueprint.get("/datasets/<dataset_id>")
def get_dataset(dataset_id: str):
    dataset = dataset_or_404(db(), current_user, dataset_id)
    return jsonify(dataset_summary(dataset))

