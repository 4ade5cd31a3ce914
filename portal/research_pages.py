"""Pages for research data: a project's subjects and longitudinal measures, a subject's visit timeline, a visit."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import current_user
from sqlalchemy import select

from portal import annotations as notes_api
from portal import research
from portal.context import db
from portal.history import history_events, history_rows
from portal.models import Dataset, DerivedMeasure, Role, Subject, Visit
from portal.permissions import can, project_or_404
from portal.research_api import object_or_404

blueprint = Blueprint("research_pages", __name__)


@blueprint.app_context_processor
def _research_helpers():
    return {"annotations_for": annotations_for, "project_subjects": project_subjects,
            "dataset_measures": dataset_measures}


def annotations_for(target_type: str, target_id) -> dict:
    """Everything the Metadata / Tags / Notes / Attachments / History tabs show (the caller has checked access)."""
    session = db()
    obj = notes_api.find_target(session, target_type, target_id)
    project_id = notes_api.project_id_of(target_type, obj)
    return {"target_type": target_type, "target_id": str(target_id),
            "api": f"/api/v1/{target_type}s/{target_id}",
            "can_edit": current_user.is_authenticated and can(session, current_user, project_id, Role.ANALYST),
            "metadata": notes_api.metadata_of(session, target_type, target_id),
            "tags": notes_api.tags_of(session, target_type, target_id),
            "notes": notes_api.notes_of(session, target_type, target_id),
            "attachments": notes_api.attachments_of(session, target_type, target_id),
            "history": history_rows(history_events(session, target_type, target_id, limit=200))}


def project_subjects(project_id: int) -> list[Subject]:
    return list(db().scalars(select(Subject).where(Subject.project_id == project_id).order_by(Subject.code)))


def dataset_measures(dataset_id: str) -> list[DerivedMeasure]:
    return list(db().scalars(select(DerivedMeasure).where(DerivedMeasure.dataset_id == dataset_id)
                             .order_by(DerivedMeasure.name)))


@blueprint.get("/projects/<int:project_id>/subjects")
def subjects(project_id: int):
    return _subjects_page(project_id, request.args.get("measure", ""))


@blueprint.get("/projects/<int:project_id>/measures")
def measures(project_id: int):
    return _subjects_page(project_id, request.args.get("measure", ""))


def _subjects_page(project_id: int, measure: str):
    project = project_or_404(db(), current_user, project_id)
    names = research.measure_names(db(), project.id)
    measure = measure if measure in names else (names[0] if names else "")
    rows = research.longitudinal_rows(db(), project.id, measure) if measure else []
    return render_template("subjects.html", project=project, subjects=project_subjects(project.id),
                           measure_names=names, measure=measure, rows=rows,
                           can_edit=can(db(), current_user, project.id, Role.ANALYST))


@blueprint.get("/subjects/<int:subject_id>")
def subject(subject_id: int):
    subject = object_or_404("subject", subject_id)
    unassigned = list(db().scalars(select(Dataset).where(Dataset.subject_id == subject.id,
                                                         Dataset.visit_id.is_(None))))
    return render_template("subject.html", subject=subject, project=subject.project, unassigned=unassigned,
                           can_edit=can(db(), current_user, subject.project_id, Role.ANALYST))


@blueprint.get("/visits/<int:visit_id>")
def visit(visit_id: int):
    visit: Visit = object_or_404("visit", visit_id)
    return render_template("visit.html", visit=visit, subject=visit.subject, project=visit.subject.project,
                           can_edit=can(db(), current_user, visit.project_id, Role.ANALYST))
