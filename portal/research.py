"""Subjects, visits, dataset assignment and hand-entered measures: Flask-free changes, each written to the audit trail."""

from __future__ import annotations

import math
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import audit
from portal.models import Dataset, DerivedMeasure, Project, Subject, User, Visit

SUBJECT_FIELDS = {"code": 100, "species": 100, "description": 100_000}
VISIT_FIELDS = {"code": 100, "visit_date": None, "instrument": 200, "operator": 200, "description": 100_000}
DATASET_FIELDS = {"name": 300, "description": 100_000, "modality": 60, "subject_id": None, "visit_id": None}


class InvalidInput(ValueError):
    """Input that cannot be stored as given; the message says why (answered with 400)."""


class Conflict(ValueError):
    """Input that clashes with what exists, e.g. a duplicate subject code (answered with 409)."""


def parse_date(value) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"{value!r} is not a date; use YYYY-MM-DD") from None


def _clean(fields: dict, payload: dict, *, partial: bool) -> dict:
    """The known fields of `payload`, as strings within their length, dates parsed; unknown fields are refused."""
    unknown = set(payload) - set(fields) - {"reason"}
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}; allowed: {', '.join(fields)}")
    values = {}
    for name, limit in fields.items():
        if name not in payload:
            continue
        value = payload[name]
        if name.endswith("_date"):
            values[name] = parse_date(value)
        elif name.endswith("_id"):
            values[name] = value
        else:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise InvalidInput(f"field '{name}' must be text")
            value = str(value).strip()
            if len(value) > limit:
                raise InvalidInput(f"field '{name}' is longer than {limit} characters")
            values[name] = value
    if "code" in fields and (not partial or "code" in values) and not values.get("code"):
        raise InvalidInput("field 'code' is required")
    return values


def snapshot(obj, fields) -> dict:
    return {name: getattr(obj, name) for name in fields}


def _apply(obj, values: dict) -> tuple[dict, dict]:
    """Set the changed values; returns (old, new) of what really changed."""
    old, new = {}, {}
    for name, value in values.items():
        if getattr(obj, name) != value:
            old[name], new[name] = getattr(obj, name), value
            setattr(obj, name, value)
    return old, new


def create_subject(session: Session, user: User, project: Project, payload: dict, remote_addr: str = "") -> Subject:
    values = _clean(SUBJECT_FIELDS, payload, partial=False)
    _unique_subject_code(session, project.id, values["code"])
    subject = Subject(project_id=project.id, created_by_id=user.id, **{"species": "", "description": ""} | values)
    session.add(subject)
    session.flush()
    audit.record(session, "create", user=user, target_type="subject", target_id=subject.id, project_id=project.id,
                 new=snapshot(subject, SUBJECT_FIELDS), remote_addr=remote_addr)
    session.commit()
    return subject


def update_subject(session: Session, user: User, subject: Subject, payload: dict, remote_addr: str = "") -> Subject:
    values = _clean(SUBJECT_FIELDS, payload, partial=True)
    if values.get("code") and values["code"] != subject.code:
        _unique_subject_code(session, subject.project_id, values["code"])
    return _modify(session, user, subject, "subject", values, payload, remote_addr)


def _unique_subject_code(session: Session, project_id: int, code: str) -> None:
    if session.scalar(select(Subject.id).where(Subject.project_id == project_id, Subject.code == code)):
        raise Conflict(f"this project already has a subject {code!r}")


def create_visit(session: Session, user: User, subject: Subject, payload: dict, remote_addr: str = "") -> Visit:
    values = _clean(VISIT_FIELDS, payload, partial=False)
    _unique_visit_code(session, subject.id, values["code"])
    visit = Visit(project_id=subject.project_id, subject_id=subject.id, created_by_id=user.id,
                  **{"instrument": "", "operator": "", "description": ""} | values)
    session.add(visit)
    session.flush()
    audit.record(session, "create", user=user, target_type="visit", target_id=visit.id, project_id=visit.project_id,
                 new=snapshot(visit, VISIT_FIELDS) | {"subject": subject.code}, remote_addr=remote_addr)
    session.commit()
    return visit


def update_visit(session: Session, user: User, visit: Visit, payload: dict, remote_addr: str = "") -> Visit:
    values = _clean(VISIT_FIELDS, payload, partial=True)
    if values.get("code") and values["code"] != visit.code:
        _unique_visit_code(session, visit.subject_id, values["code"])
    return _modify(session, user, visit, "visit", values, payload, remote_addr)


def _unique_visit_code(session: Session, subject_id: int, code: str) -> None:
    if session.scalar(select(Visit.id).where(Visit.subject_id == subject_id, Visit.code == code)):
        raise Conflict(f"this subject already has a visit {code!r}")


def update_dataset(session: Session, user: User, dataset: Dataset, payload: dict, remote_addr: str = "") -> Dataset:
    """Rename, describe, set the modality, or assign to a subject and visit of the same project (a visit implies its subject)."""
    values = _clean(DATASET_FIELDS, payload, partial=True)
    if "name" in values and not values["name"]:
        raise InvalidInput("field 'name' cannot be empty")
    if values.get("visit_id") not in (None, ""):
        visit = _same_project(session, Visit, values["visit_id"], dataset.project_id, "visit")
        if values.get("subject_id") not in (None, "") and int(values["subject_id"]) != visit.subject_id:
            raise InvalidInput(f"visit {visit.id} belongs to subject {visit.subject_id}, not {values['subject_id']}")
        values["visit_id"], values["subject_id"] = visit.id, visit.subject_id
    elif "visit_id" in values:
        values["visit_id"] = None
    if values.get("subject_id") not in (None, ""):
        values["subject_id"] = _same_project(session, Subject, values["subject_id"], dataset.project_id, "subject").id
        current_visit = session.get(Visit, dataset.visit_id) if dataset.visit_id and "visit_id" not in values else None
        if current_visit is not None and current_visit.subject_id != values["subject_id"]:
            values["visit_id"] = None  # the old visit was another subject's
    elif "subject_id" in values:
        values["subject_id"], values["visit_id"] = None, None
    return _modify(session, user, dataset, "dataset", values, payload, remote_addr)


def _same_project(session: Session, model, object_id, project_id: int, what: str):
    try:
        obj = session.get(model, int(object_id))
    except (TypeError, ValueError):
        raise InvalidInput(f"{what}_id must be a number, not {object_id!r}") from None
    if obj is None or obj.project_id != project_id:
        raise InvalidInput(f"no {what} {object_id} in this dataset's project")
    return obj


def _modify(session: Session, user: User, obj, target_type: str, values: dict, payload: dict, remote_addr: str):
    old, new = _apply(obj, values)
    if new:
        audit.record(session, "modify", user=user, target_type=target_type, target_id=obj.id,
                     project_id=obj.project_id, old=old, new=new, reason=str(payload.get("reason", ""))[:2000],
                     remote_addr=remote_addr)
    session.commit()
    return obj


def delete_object(session: Session, user: User, obj, target_type: str, fields, reason: str = "",
                  remote_addr: str = "") -> list[str]:
    """Delete a subject or visit (its visits go with a subject; datasets stay, unassigned) and its annotations.

    Returns the SHA-256 of attachment files that may now be unreferenced (see annotations.discard_unreferenced).
    """
    from portal.annotations import purge_annotations

    targets = [(target_type, obj.id)] + [("visit", v.id) for v in getattr(obj, "visits", [])]
    hashes = [h for kind, object_id in targets for h in purge_annotations(session, kind, object_id)]
    audit.record(session, "delete", user=user, target_type=target_type, target_id=obj.id, project_id=obj.project_id,
                 old=snapshot(obj, fields), reason=reason[:2000], remote_addr=remote_addr)
    session.delete(obj)
    session.commit()
    return hashes


def add_measure(session: Session, user: User, dataset: Dataset, payload: dict, remote_addr: str = "") -> DerivedMeasure:
    """A derived measure entered by hand: {name, value, unit, description?}."""
    name = str(payload.get("name", "")).strip()
    if not name or len(name) > 200:
        raise InvalidInput("field 'name' is required (up to 200 characters)")
    value = payload.get("value")
    if isinstance(value, bool):
        raise InvalidInput("field 'value' must be a number")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"field 'value' must be a number, not {value!r}") from None
    if not math.isfinite(value):
        raise InvalidInput("field 'value' must be a finite number")
    unit = str(payload.get("unit", "")).strip()[:40]
    measure = DerivedMeasure(project_id=dataset.project_id, dataset_id=dataset.id, subject_id=dataset.subject_id,
                             visit_id=dataset.visit_id, name=name, value=value, unit=unit,
                             description=str(payload.get("description", ""))[:10_000], created_by_id=user.id)
    session.add(measure)
    session.flush()
    audit.record(session, "measure.create", user=user, target_type="dataset", target_id=dataset.id,
                 project_id=dataset.project_id, new={"id": measure.id, "name": name, "value": value, "unit": unit},
                 remote_addr=remote_addr)
    session.commit()
    return measure


def subject_json(subject: Subject) -> dict:
    return {"id": subject.id, "project_id": subject.project_id, "code": subject.code, "species": subject.species,
            "description": subject.description, "created_at": subject.created_at.isoformat(),
            "visits": len(subject.visits), "url": f"/subjects/{subject.id}"}


def visit_json(visit: Visit) -> dict:
    return {"id": visit.id, "project_id": visit.project_id, "subject_id": visit.subject_id,
            "subject_code": visit.subject.code, "code": visit.code,
            "visit_date": visit.visit_date.isoformat() if visit.visit_date else None,
            "instrument": visit.instrument, "operator": visit.operator, "description": visit.description,
            "created_at": visit.created_at.isoformat(), "datasets": [d.id for d in visit.datasets],
            "url": f"/visits/{visit.id}"}


def measure_json(measure: DerivedMeasure) -> dict:
    return {"id": measure.id, "dataset_id": measure.dataset_id, "result_id": measure.result_id, "name": measure.name,
            "value": measure.value, "unit": measure.unit, "description": measure.description,
            "source": "analysis" if measure.result_id else "entered by hand",
            "created_at": measure.created_at.isoformat()}


def measure_names(session: Session, project_id: int) -> list[str]:
    """Names of every derived measure in the project, for the longitudinal view's chooser."""
    query = select(DerivedMeasure.name).where(DerivedMeasure.project_id == project_id).distinct()
    return sorted(session.scalars(query))


def longitudinal_rows(session: Session, project_id: int, name: str) -> list[dict]:
    """One row per (measure, dataset) of datasets assigned to a visit: subject, visit, date, value, unit; by subject then date."""
    query = (select(DerivedMeasure, Dataset, Visit, Subject)
             .join(Dataset, DerivedMeasure.dataset_id == Dataset.id)
             .join(Visit, Dataset.visit_id == Visit.id)
             .join(Subject, Visit.subject_id == Subject.id)
             .where(DerivedMeasure.project_id == project_id, DerivedMeasure.name == name))
    rows = [{"subject_id": subject.id, "subject": subject.code, "visit_id": visit.id, "visit": visit.code,
             "visit_date": visit.visit_date.isoformat() if visit.visit_date else "", "dataset_id": dataset.id,
             "dataset": dataset.name, "measure": measure.name, "value": measure.value, "unit": measure.unit,
             "source": "analysis" if measure.result_id else "entered by hand"}
            for measure, dataset, visit, subject in session.execute(query)]
    return sorted(rows, key=lambda r: (r["subject"], r["visit_date"] or "9999", r["visit"], r["dataset"]))
