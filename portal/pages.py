"""HTML pages: projects, a project's datasets with the upload form, a dataset, the viewer."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from portal.context import db, settings, storage
from portal.datasets import EmptyUpload, register_upload
from portal.jobs import QueueUnavailable
from portal.models import Dataset, DatasetStatus, Membership, Project, Result, Role
from portal.permissions import can, dataset_or_404, project_or_404, role_in, visible_projects
from tiler.errors import TilerError

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
def index():
    return render_template("index.html", projects=visible_projects(db(), current_user))


@blueprint.post("/projects")
def create_project():
    name = request.form.get("name", "").strip()
    if not name:
        flash("A project needs a name.", "error")
        return redirect(url_for("pages.index"))
    project = create_project_for(current_user, name, request.form.get("description", ""))
    flash(f"Project “{project.name}” created.", "info")
    return redirect(url_for("pages.project", project_id=project.id))


def create_project_for(user, name: str, description: str = "") -> Project:
    project = Project(name=name[:200], description=description.strip(), created_by_id=user.id)
    project.memberships.append(Membership(user_id=user.id, role=Role.OWNER.value))
    db().add(project)
    db().commit()
    return project


@blueprint.get("/projects/<int:project_id>")
def project(project_id: int):
    project = project_or_404(db(), current_user, project_id)
    datasets = db().scalars(select(Dataset).where(Dataset.project_id == project.id).order_by(Dataset.created_at.desc()))
    role = role_in(db(), current_user, project.id)
    return render_template("project.html", project=project, datasets=list(datasets), role=role,
                           can_upload=role.rank >= Role.ANALYST.rank, max_upload=settings().max_upload_bytes)


@blueprint.post("/projects/<int:project_id>/datasets")
def upload(project_id: int):
    """Form fallback for browsers without JavaScript; the page's script posts to the API instead."""
    project = project_or_404(db(), current_user, project_id, Role.ANALYST)
    file = request.files.get("file")
    if file is None or not file.filename:
        flash("Choose an image file to upload.", "error")
        return redirect(url_for("pages.project", project_id=project.id))
    try:
        dataset = register_upload(db(), settings(), storage(), project, current_user, file.stream, file.filename,
                                  request.form.get("name", ""))
    except (TilerError, EmptyUpload, QueueUnavailable) as exc:
        flash(str(exc), "error")
        return redirect(url_for("pages.project", project_id=project.id))
    return redirect(url_for("pages.dataset", dataset_id=dataset.id))


@blueprint.get("/datasets/<dataset_id>")
def dataset(dataset_id: str):
    dataset = dataset_or_404(db(), current_user, dataset_id)
    results = list(db().scalars(select(Result).where(Result.dataset_id == dataset.id).order_by(Result.created_at.desc())))
    return render_template("dataset.html", dataset=dataset, project=dataset.project, results=results)


@blueprint.get("/datasets/<dataset_id>/view")
def viewer(dataset_id: str):
    dataset = dataset_or_404(db(), current_user, dataset_id)
    if dataset.status != DatasetStatus.READY.value:
        abort(409, f"dataset {dataset.name} is {dataset.status}, not ready to view")
    return render_template("viewer.html", dataset=dataset, project=dataset.project,
                           can_analyse=can(db(), current_user, dataset.project_id, Role.ANALYST))
