"""JSON API for research data: subjects, visits, dataset assignment, measures, and annotations and history of any object."""

from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, abort, jsonify, request
from flask_login import current_user
from sqlalchemy import select

from portal import annotations as notes_api
from portal import audit, research
from portal.annotations import find_target, project_id_of, target_type_of
from portal.context import db, storage
from portal.downloads import send_stored
from portal.errors import error_response
from portal.history import CSV_COLUMNS, event_json, history_events, history_rows
from portal.models import (
    Attachment,
    DerivedMeasure,
    MetadataEntry,
    Note,
    Role,
    Subject,
    Tag,
)
from portal.permissions import dataset_or_404, project_or_404, role_in

blueprint = Blueprint("research_api", __name__, url_prefix="/api/v1")
ANNOTATED = "/<kind>/<target_id>"


@blueprint.errorhandler(research.InvalidInput)
def _invalid(exc):
    return error_response(400, str(exc))


@blueprint.errorhandler(research.Conflict)
def _conflict(exc):
    return error_response(409, str(exc))


# ---- access and plumbing, shared with research_pages ----

def object_or_404(target_type: str, target_id, needed: Role = Role.VIEWER):
    """The project, subject, visit, dataset or result if the user may act on it with `needed` (404 / 403 otherwise)."""
    obj = find_target(db(), target_type, target_id)
    if obj is None or role_in(db(), current_user, project_id_of(target_type, obj)) is None:
        abort(404, f"no {target_type} {target_id} visible to you")
    project_or_404(db(), current_user, project_id_of(target_type, obj), needed)
    return obj


def annotated_or_404(kind: str, target_id: str, needed: Role = Role.VIEWER):
    target_type = target_type_of(kind)
    if target_type is None:
        abort(404, f"{kind!r} carries no annotations; use one of projects, subjects, visits, datasets, results")
    return target_type, object_or_404(target_type, target_id, needed)


def payload() -> dict:
    body = request.get_json(silent=True)
    if body is None and request.content_length:
        body = request.form.to_dict()
    if body is None:
        body = {}
    if not isinstance(body, dict):
        abort(400, "send a JSON object")
    return body


def reason() -> str:
    return str(payload().get("reason", "") or request.args.get("reason", ""))


def remote() -> str:
    return request.remote_addr or ""


def _safe_cell(value):
    """Cells a spreadsheet would run as a formula get a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_response(rows: list[dict], columns, filename: str) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _safe_cell(v) for k, v in row.items()})
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def wants_csv() -> bool:
    return request.args.get("format") == "csv"


SUBJECT_COLUMNS = ("id", "code", "species", "description", "visits", "created_at")
VISIT_COLUMNS = ("id", "subject_code", "code", "visit_date", "instrument", "operator", "description", "created_at")
MEASURE_COLUMNS = ("id", "dataset_id", "name", "value", "unit", "source", "description", "created_at")
LONGITUDINAL_COLUMNS = ("subject", "visit", "visit_date", "dataset", "measure", "value", "unit", "source",
                        "subject_id", "visit_id", "dataset_id")
METADATA_COLUMNS = ("key", "type", "text", "unit", "updated_at")


# ---- subjects and visits ----

@blueprint.get("/projects/<int:project_id>/subjects")
def list_subjects(project_id: int):
    project = project_or_404(db(), current_user, project_id)
    rows = [research.subject_json(s) for s in
            db().scalars(select(Subject).where(Subject.project_id == project.id).order_by(Subject.code))]
    return csv_response(rows, SUBJECT_COLUMNS, f"project-{project.id}-subjects.csv") if wants_csv() else jsonify(subjects=rows)


@blueprint.post("/projects/<int:project_id>/subjects")
def create_subject(project_id: int):
    project = project_or_404(db(), current_user, project_id, Role.ANALYST)
    subject = research.create_subject(db(), current_user, project, payload(), remote())
    return jsonify(research.subject_json(subject)), 201


@blueprint.get("/subjects/<int:subject_id>")
def get_subject(subject_id: int):
    subject = object_or_404("subject", subject_id)
    return jsonify(research.subject_json(subject) | {"visits": [research.visit_json(v) for v in subject.visits]})


@blueprint.patch("/subjects/<int:subject_id>")
def update_subject(subject_id: int):
    subject = object_or_404("subject", subject_id, Role.ANALYST)
    return jsonify(research.subject_json(research.update_subject(db(), current_user, subject, payload(), remote())))


@blueprint.delete("/subjects/<int:subject_id>")
def delete_subject(subject_id: int):
    subject = object_or_404("subject", subject_id, Role.ANALYST)
    hashes = research.delete_object(db(), current_user, subject, "subject", research.SUBJECT_FIELDS, reason(), remote())
    notes_api.discard_unreferenced(db(), storage(), hashes)
    return "", 204


@blueprint.get("/subjects/<int:subject_id>/visits")
def list_visits(subject_id: int):
    subject = object_or_404("subject", subject_id)
    rows = [research.visit_json(v) for v in subject.visits]
    return csv_response(rows, VISIT_COLUMNS, f"subject-{subject.id}-visits.csv") if wants_csv() else jsonify(visits=rows)


@blueprint.post("/subjects/<int:subject_id>/visits")
def create_visit(subject_id: int):
    subject = object_or_404("subject", subject_id, Role.ANALYST)
    visit = research.create_visit(db(), current_user, subject, payload(), remote())
    return jsonify(research.visit_json(visit)), 201


@blueprint.get("/visits/<int:visit_id>")
def get_visit(visit_id: int):
    return jsonify(research.visit_json(object_or_404("visit", visit_id)))


@blueprint.patch("/visits/<int:visit_id>")
def update_visit(visit_id: int):
    visit = object_or_404("visit", visit_id, Role.ANALYST)
    return jsonify(research.visit_json(research.update_visit(db(), current_user, visit, payload(), remote())))


@blueprint.delete("/visits/<int:visit_id>")
def delete_visit(visit_id: int):
    visit = object_or_404("visit", visit_id, Role.ANALYST)
    hashes = research.delete_object(db(), current_user, visit, "visit", research.VISIT_FIELDS, reason(), remote())
    notes_api.discard_unreferenced(db(), storage(), hashes)
    return "", 204


# ---- datasets: assignment, description, measures; the project's longitudinal table ----

@blueprint.patch("/datasets/<dataset_id>")
def update_dataset(dataset_id: str):
    dataset = dataset_or_404(db(), current_user, dataset_id, Role.ANALYST)
    research.update_dataset(db(), current_user, dataset, payload(), remote())
    return jsonify({"id": dataset.id, "name": dataset.name, "description": dataset.description,
                    "modality": dataset.modality, "subject_id": dataset.subject_id, "visit_id": dataset.visit_id})


@blueprint.get("/datasets/<dataset_id>/measures")
def list_measures(dataset_id: str):
    dataset = dataset_or_404(db(), current_user, dataset_id)
    rows = [research.measure_json(m) for m in db().scalars(
        select(DerivedMeasure).where(DerivedMeasure.dataset_id == dataset.id).order_by(DerivedMeasure.name))]
    return csv_response(rows, MEASURE_COLUMNS, f"dataset-{dataset.id[:8]}-measures.csv") if wants_csv() else jsonify(measures=rows)


@blueprint.post("/datasets/<dataset_id>/measures")
def add_measure(dataset_id: str):
    dataset = dataset_or_404(db(), current_user, dataset_id, Role.ANALYST)
    return jsonify(research.measure_json(research.add_measure(db(), current_user, dataset, payload(), remote()))), 201


@blueprint.get("/projects/<int:project_id>/measures")
def longitudinal(project_id: int):
    """Without ?name: the measure names; with it: one row per dataset of a visit (?format=csv for the table)."""
    project = project_or_404(db(), current_user, project_id)
    name = request.args.get("name", "")
    if not name:
        return jsonify(names=research.measure_names(db(), project.id))
    rows = research.longitudinal_rows(db(), project.id, name)
    if wants_csv():
        return csv_response(rows, LONGITUDINAL_COLUMNS, f"project-{project.id}-{_slug(name)}.csv")
    return jsonify(name=name, rows=rows)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:60] or "measure"


# ---- annotations of any object ----

@blueprint.get(ANNOTATED + "/metadata")
def list_metadata(kind: str, target_id: str):
    target_type, _ = annotated_or_404(kind, target_id)
    rows = [notes_api.metadata_json(e) for e in notes_api.metadata_of(db(), target_type, target_id)]
    return csv_response(rows, METADATA_COLUMNS, f"{target_type}-{target_id}-metadata.csv") if wants_csv() else jsonify(metadata=rows)


@blueprint.post(ANNOTATED + "/metadata")
def set_metadata(kind: str, target_id: str):
    target_type, obj = annotated_or_404(kind, target_id, Role.ANALYST)
    entry = notes_api.set_metadata(db(), current_user, project_id_of(target_type, obj), target_type, target_id,
                                   payload(), remote())
    return jsonify(notes_api.metadata_json(entry)), 201


@blueprint.delete(ANNOTATED + "/metadata/<path:key>")
def delete_metadata(kind: str, target_id: str, key: str):
    target_type, _ = annotated_or_404(kind, target_id, Role.ANALYST)
    entry = db().scalar(select(MetadataEntry).where(MetadataEntry.target_type == target_type,
                                                    MetadataEntry.target_id == str(target_id), MetadataEntry.key == key))
    if entry is None:
        abort(404, f"no metadata key {key!r} on this {target_type}")
    notes_api.delete_metadata(db(), current_user, entry, reason(), remote())
    return "", 204


@blueprint.get(ANNOTATED + "/tags")
def list_tags(kind: str, target_id: str):
    target_type, _ = annotated_or_404(kind, target_id)
    return jsonify(tags=[t.name for t in notes_api.tags_of(db(), target_type, target_id)])


@blueprint.post(ANNOTATED + "/tags")
def add_tag(kind: str, target_id: str):
    target_type, obj = annotated_or_404(kind, target_id, Role.ANALYST)
    tag = notes_api.add_tag(db(), current_user, project_id_of(target_type, obj), target_type, target_id,
                            payload().get("name", ""), remote())
    return jsonify(name=tag.name), 201


@blueprint.delete(ANNOTATED + "/tags/<path:name>")
def remove_tag(kind: str, target_id: str, name: str):
    target_type, _ = annotated_or_404(kind, target_id, Role.ANALYST)
    tag = db().scalar(select(Tag).where(Tag.target_type == target_type, Tag.target_id == str(target_id),
                                        Tag.name == name))
    if tag is None:
        abort(404, f"no tag {name!r} on this {target_type}")
    notes_api.remove_tag(db(), current_user, tag, reason(), remote())
    return "", 204


@blueprint.get(ANNOTATED + "/notes")
def list_notes(kind: str, target_id: str):
    target_type, _ = annotated_or_404(kind, target_id)
    return jsonify(notes=[notes_api.note_json(n) for n in notes_api.notes_of(db(), target_type, target_id)])


@blueprint.post(ANNOTATED + "/notes")
def add_note(kind: str, target_id: str):
    target_type, obj = annotated_or_404(kind, target_id, Role.ANALYST)
    note = notes_api.add_note(db(), current_user, project_id_of(target_type, obj), target_type, target_id,
                              payload().get("body", ""), remote())
    return jsonify(notes_api.note_json(note)), 201


def _note_or_404(note_id: int, needed: Role) -> Note:
    note = db().get(Note, note_id)
    if note is None or role_in(db(), current_user, note.project_id) is None:
        abort(404, f"no note {note_id} visible to you")
    project_or_404(db(), current_user, note.project_id, needed)
    return note


@blueprint.patch("/notes/<int:note_id>")
def update_note(note_id: int):
    note = _note_or_404(note_id, Role.ANALYST)
    body = payload()
    notes_api.update_note(db(), current_user, note, body.get("body", ""), str(body.get("reason", "")), remote())
    return jsonify(notes_api.note_json(note))


@blueprint.delete("/notes/<int:note_id>")
def delete_note(note_id: int):
    notes_api.delete_note(db(), current_user, _note_or_404(note_id, Role.ANALYST), reason(), remote())
    return "", 204


@blueprint.url_value_preprocessor
def _attachment_project(endpoint, values):
    """Name the target's project before the body is parsed, so StreamingUploadRequest can check the uploader's role."""
    if endpoint == "research_api.upload_attachment" and values is not None and current_user.is_authenticated:
        _, obj = annotated_or_404(values["kind"], values["target_id"])
        values["project_id"] = project_id_of(target_type_of(values["kind"]), obj)


@blueprint.get(ANNOTATED + "/attachments")
def list_attachments(kind: str, target_id: str):
    target_type, _ = annotated_or_404(kind, target_id)
    return jsonify(attachments=[notes_api.attachment_json(a)
                                for a in notes_api.attachments_of(db(), target_type, target_id)])


@blueprint.post(ANNOTATED + "/attachments")
def upload_attachment(kind: str, target_id: str, project_id: int | None = None):
    """Multipart upload (field `file`, optional `description`) of any file, stored as-is under originals/."""
    target_type, obj = annotated_or_404(kind, target_id, Role.ANALYST)
    file = request.files.get("file")
    if file is None or not file.filename:
        abort(400, "multipart field 'file' with a filename is required")
    attachment = notes_api.add_attachment(db(), storage(), current_user, project_id_of(target_type, obj), target_type,
                                          target_id, file.stream, file.filename, file.mimetype or "",
                                          request.form.get("description", ""), remote())
    return jsonify(notes_api.attachment_json(attachment)), 201


def _attachment_or_404(attachment_id: int, needed: Role) -> Attachment:
    attachment = db().get(Attachment, attachment_id)
    if attachment is None or role_in(db(), current_user, attachment.project_id) is None:
        abort(404, f"no attachment {attachment_id} visible to you")
    project_or_404(db(), current_user, attachment.project_id, needed)
    return attachment


@blueprint.get("/attachments/<int:attachment_id>/download")
def download_attachment(attachment_id: int):
    attachment = _attachment_or_404(attachment_id, Role.VIEWER)
    path = storage().original(attachment.sha256)
    if not path.is_file():
        abort(410, f"the file of attachment {attachment.filename} is missing from storage")
    audit.record(db(), "download", user=current_user, target_type="attachment", target_id=attachment.id,
                 project_id=attachment.project_id, new={"file": attachment.filename, "sha256": attachment.sha256,
                                                        "on": f"{attachment.target_type} {attachment.target_id}"},
                 remote_addr=remote())
    db().commit()
    return send_stored(path, mimetype=attachment.media_type, download_name=attachment.filename, etag=attachment.sha256)


@blueprint.delete("/attachments/<int:attachment_id>")
def delete_attachment(attachment_id: int):
    attachment = _attachment_or_404(attachment_id, Role.ANALYST)
    notes_api.delete_attachment(db(), storage(), current_user, attachment, reason(), remote())
    return "", 204


@blueprint.get(ANNOTATED + "/history")
def history(kind: str, target_id: str):
    target_type, _ = annotated_or_404(kind, target_id)
    events = history_events(db(), target_type, target_id)
    if wants_csv():
        return csv_response(history_rows(events), CSV_COLUMNS, f"{target_type}-{target_id}-history.csv")
    return jsonify(events=[event_json(e) for e in events])
