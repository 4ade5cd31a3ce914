"""Queueing analyses: the methods on offer, checked parameters, and a `segment` job per request (or reproduction)."""

from __future__ import annotations

import re

from flask import Blueprint, abort, jsonify, request
from flask_login import current_user
from sqlalchemy.orm import Session

from portal import audit
from portal.context import db, settings
from portal.jobs import QueueUnavailable, enqueue
from portal.models import Dataset, DatasetStatus, Job, Result, Role, User
from portal.permissions import dataset_or_404
from portal.settings import Settings
from tiler.errors import InvalidParameter

blueprint = Blueprint("analysis", __name__, url_prefix="/api/v1")

SEGMENT_KIND = "segment"
MAX_RECIPIENTS = 10
_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+")


def check_recipients(raw) -> list[str]:
    """Extra addresses to mail the outcome to: a list (or comma-separated text) of at most MAX_RECIPIENTS."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise InvalidParameter("recipients must be a list of e-mail addresses")
    if len(raw) > MAX_RECIPIENTS:
        raise InvalidParameter(f"at most {MAX_RECIPIENTS} recipients, not {len(raw)}")
    for address in raw:
        if not _EMAIL.fullmatch(address):
            raise InvalidParameter(f"{address[:80]!r} is not an e-mail address")
    return list(dict.fromkeys(raw))


def checked_analysis(dataset: Dataset, method: str, params: dict) -> dict:
    """The normalised parameters of `method` on `dataset`; InvalidParameter says what is wrong."""
    if dataset.status != DatasetStatus.READY.value:
        raise DatasetNotReady(f"dataset {dataset.name} is {dataset.status}; analyses need a converted (ready) dataset")
    if not isinstance(method, str) or not method:
        raise InvalidParameter("method is required, e.g. \"threshold\"")
    if not isinstance(params, dict):
        raise InvalidParameter("params must be an object of parameter names and values")
    from tiler.segmentation import validate_params  # imported on use: it pulls in scikit-image

    ndim = 3 if dataset.is_volume else 2
    analysis = validate_params({**params, "method": method}, ndim, dataset.channels or 1)
    if analysis["method"] == "classifier":  # the scribbles are checked against the image now, not in the worker
        from tiler.segmentation.classifier import validate_scribbles

        shape = (dataset.depth, dataset.height, dataset.width) if dataset.is_volume else (dataset.height, dataset.width)
        analysis["scribbles"], analysis["class_names"] = validate_scribbles(
            analysis.get("scribbles"), analysis.get("class_names"), ndim=ndim, shape_zyx_or_yx=shape)
    return analysis


class DatasetNotReady(Exception):
    pass


def queue_analysis(session: Session, settings: Settings, dataset: Dataset, user: User | None, analysis: dict, *,
                   recipients: list[str] = (), reproduces: Result | None = None, notify: bool = True) -> Job:
    """Record and queue a segment job for already-checked `analysis` parameters; audited."""
    params = {"analysis": analysis, "recipients": list(recipients), "notify": notify}
    if reproduces is not None:
        params["reproduces"] = reproduces.id
    job = enqueue(session, settings, SEGMENT_KIND, dataset_id=dataset.id, user_id=user.id if user else None,
                  params=params)
    audit.record(session, "analysis.queue", user=user, actor="" if user else "system", target_type="job",
                 target_id=job.id, project_id=dataset.project_id,
                 new={"dataset": dataset.id, "method": analysis.get("method"), "reproduces": params.get("reproduces")})
    session.commit()
    return job


@blueprint.get("/analysis/methods")
def methods():
    """The analysis methods and their parameters (types, defaults, ranges, help), for building forms."""
    from tiler.segmentation import describe_methods

    return jsonify(methods=describe_methods())


@blueprint.post("/datasets/<dataset_id>/analyses")
def submit(dataset_id: str):
    """Queue an analysis: {"method", "params", "recipients"} → 202 with the job, or a 4xx saying what is wrong."""
    dataset = dataset_or_404(db(), current_user, dataset_id, Role.ANALYST)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "send a JSON object: {\"method\": ..., \"params\": {...}, \"recipients\": [...]}")
    try:
        analysis = checked_analysis(dataset, body.get("method"), body.get("params", {}))
        recipients = check_recipients(body.get("recipients"))
    except DatasetNotReady as exc:
        abort(409, str(exc))
    except InvalidParameter as exc:
        abort(400, str(exc))
    try:
        job = queue_analysis(db(), settings(), dataset, current_user, analysis, recipients=recipients)
    except QueueUnavailable as exc:
        abort(503, str(exc))
    return jsonify(job_id=job.id, job_url=f"/jobs/{job.id}",
                   status_url=f"/api/v1/jobs/{job.id}", params=analysis), 202
